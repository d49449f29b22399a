"""dwdp.Config and dwdp.Weight: bad input is refused with one sentence, the partition's with
the library's own sentence (the one `dwdp validate` reports for the same numbers)."""

import unittest

import support  # noqa: F401 -- puts python/ on the path
from inspect_test import ScenarioFile, small_scenario

import dwdp
from support import Cli

WEIGHTS = (dwdp.Weight("w13", "bfloat16", (1024, 512)), dwdp.Weight("w2", "bf16", (512, 512)))


def config(**changes):
    fields = dict(dwdp_size=2, num_experts_per_worker=9, num_prefetch_experts=7, num_experts=16,
                  moe_layers=(1, 2, 3, 4), weights=WEIGHTS)
    fields.update(changes)
    return dwdp.Config(**fields)


def one_sentence(test, error):
    text = str(error)
    test.assertTrue(text.startswith("dwdp: "), text)
    test.assertNotIn("\n", text)


class PartitionErrorsTest(unittest.TestCase):
    def test_each_check_raises_the_sentence_validate_reports(self):
        cases = {
            "gap": dict(num_experts_per_worker=5, num_prefetch_experts=7),
            "coverage": dict(num_experts_per_worker=4, num_prefetch_experts=4),
            "tail_padding": dict(num_experts_per_worker=9, num_prefetch_experts=9),
            "size_positive": dict(num_experts_per_worker=0, num_prefetch_experts=7),
            "stride_positive": dict(num_experts_per_worker=9, num_prefetch_experts=0),
            "dwdp_size": dict(dwdp_size=1, num_experts_per_worker=16, num_prefetch_experts=16),
        }
        for check, fields in cases.items():
            with self.subTest(check=check):
                with ScenarioFile(small_scenario(**fields)) as path:
                    cli = Cli(["validate", path, "--format", "json"])
                self.assertEqual(cli.json["error"]["check"], check)
                with self.assertRaises(dwdp.Error) as caught:
                    config(**fields)
                self.assertEqual(str(caught.exception),
                                 "dwdp: %s: %s" % (check, cli.json["error"]["message"]))
                self.assertEqual(caught.exception.code, "invalid_argument")

    def test_a_valid_config_is_accepted(self):
        c = config()
        self.assertTrue(c.complete)
        self.assertEqual(list(c.local_experts(1)), list(range(7, 16)))
        self.assertEqual(c.weights[0].bytes_per_expert, 1024 * 512 * 2)

    def test_a_partial_config_is_checked_once_complete(self):
        partial = dwdp.Config(dwdp_size=2, num_experts_per_worker=5, num_prefetch_experts=7)
        self.assertFalse(partial.complete)
        with self.assertRaises(dwdp.Error) as caught:
            partial.check()
        self.assertIn("no num_experts, moe_layers, weights", str(caught.exception))
        with self.assertRaises(dwdp.Error) as caught:
            partial.replace(num_experts=16, moe_layers=(0,), weights=WEIGHTS)
        self.assertIn("gap:", str(caught.exception))


class LibraryChecksTest(unittest.TestCase):
    def test_config_errors_beyond_the_partition(self):
        cases = [
            (dict(moe_layers=(2, 1)), "moe_layers must be non-negative layer indices in "
                                      "ascending order without repeats; entry 1 is 1"),
            (dict(moe_layers=()), "moe_layers is empty"),
            (dict(weights=(WEIGHTS[0], WEIGHTS[0])), "weight name 'w13' appears twice"),
            (dict(num_experts=0), "num_experts is 0; it must be positive"),
            (dict(pool_page_bytes=3 << 20), "pool page size 3145728 must be a power of two"),
            (dict(contention_mode="round_robin", contention_slice_bytes=0),
             "contention_slice_bytes must be positive for round robin"),
        ]
        for changes, sentence in cases:
            with self.subTest(changes=changes), self.assertRaises(dwdp.Error) as caught:
                config(**changes)
            self.assertIn(sentence, str(caught.exception))
            one_sentence(self, caught.exception)


class PythonChecksTest(unittest.TestCase):
    def test_types_and_names(self):
        cases = [
            (lambda: config(dwdp_size="2"), "Config.dwdp_size must be an integer; got '2'"),
            (lambda: config(num_buffers=True), "Config.num_buffers must be an integer"),
            (lambda: config(contention_mode="zigzag"), "Config.contention_mode is 'zigzag'"),
            (lambda: dwdp.Weight("w", "complex64", (4,)), "dtype 'complex64' is not one dwdp "
                                                          "knows"),
            (lambda: dwdp.Weight("w", "bf16", ()), "weight w: shape is empty"),
            (lambda: dwdp.Weight("w", "bf16", (4, 0)), "weight w: shape must be positive"),
            (lambda: dwdp.Weight("", "bf16", (4,)), "a Weight needs a name"),
            (lambda: dwdp.Weight("w", "bf16", (1024, 512), bytes_per_expert=1024 * 512),
             "weight w: shape [1024, 512] of bfloat16 is 1048576 bytes per expert, but "
             "bytes_per_expert says 524288"),
            (lambda: config().weight_index("w3"), "the config has no weight named 'w3'; its "
                                                  "weights are w13, w2"),
            (lambda: config().weight_index(2), "weight index 2 is out of range"),
            (lambda: config(weights=[42]), "a weight is a dwdp.Weight, a dict or a (name, "
                                           "dtype, shape) tuple; got 42"),
        ]
        for make, sentence in cases:
            with self.subTest(sentence=sentence), self.assertRaises(dwdp.Error) as caught:
                make()
            self.assertIn(sentence, str(caught.exception))
            one_sentence(self, caught.exception)

    def test_dtypes_by_name_and_alias(self):
        self.assertEqual(dwdp.Weight("w", "fp16", (2,)).dtype, "float16")
        self.assertEqual(dwdp.Weight("w", "fp8", (3,)).bytes_per_expert, 3)
        self.assertEqual(dwdp.Weight("w", "float32", (2, 3)).bytes_per_expert, 24)
        self.assertEqual(dwdp.Weight.raw("scales", 4096).shape, (4096,))

    def test_weights_from_dicts_and_tuples(self):
        c = config(weights=[{"name": "a", "dtype": "bf16", "shape": [8, 4]}, ("b", "int8", 16)])
        self.assertEqual([w.bytes_per_expert for w in c.weights], [64, 16])

    def test_scenario_of_a_config_validates(self):
        doc = dwdp.validate(config().to_scenario())
        self.assertTrue(doc["valid"], doc)
        self.assertEqual(doc["peer_ranges"], [[0, 9], [7, 16]])


if __name__ == "__main__":
    unittest.main()
