"""dwdp.validate / recipes / layout / plan return the documents `dwdp <command> --format json`
prints, on every scenario of the repository, from files and from dicts."""

import json
import os
import tempfile
import unittest

import support  # noqa: F401 -- puts python/ on the path

import dwdp
from support import Cli, scenario_files


def small_scenario(**dwdp_fields):
    """A scenario as a dict: 16 experts of odd sizes, 4 MoE layers, d = 2."""
    fields = {"dwdp_size": 2, "num_experts_per_worker": 9, "num_prefetch_experts": 7}
    fields.update(dwdp_fields)
    return {
        "name": "dict-scenario",
        "model": {
            "display_name": "small",
            "num_experts": 16,
            "moe_layers": [1, 4],
            "num_layers": 6,
            "weights": [{"name": "w13", "expert_bytes": 1572869},
                        {"name": "w2", "expert_bytes": "768 KiB"}],
        },
        "dwdp": fields,
        "hardware": "h200-sxm",
    }


class ScenarioFile:
    """A dict written to a temporary file as JSON (which the YAML loader reads), for the CLI."""

    def __init__(self, scenario):
        self.scenario = scenario

    def __enter__(self):
        handle, self.path = tempfile.mkstemp(suffix=".yaml")
        with os.fdopen(handle, "w") as out:
            json.dump(self.scenario, out)
        return self.path

    def __exit__(self, *exc):
        os.unlink(self.path)


class ValidateTest(unittest.TestCase):
    def test_every_scenario_equals_the_cli(self):
        files = scenario_files() + scenario_files("invalid")
        self.assertGreater(len(files), 30)
        for path in files:
            with self.subTest(path=os.path.relpath(path, support.REPO)):
                cli = Cli(["validate", path, "--format", "json"])
                self.assertIsNotNone(cli.json)
                self.assertEqual(dwdp.validate(path), cli.json)

    def test_world_size_equals_the_cli(self):
        path = os.path.join(support.SCENARIOS, "sim-small-d2-2groups.yaml")
        for world in (2, 4, 5):
            with self.subTest(world_size=world):
                cli = Cli(["validate", path, "--world-size", str(world), "--format", "json"])
                self.assertEqual(dwdp.validate(path, world_size=world), cli.json)
        # The two groups need 4 ranks: 2 are too few (world_size check).
        self.assertEqual(dwdp.validate(path, world_size=2)["error"]["check"], "world_size")

    def test_malformed_scenarios_raise_the_cli_sentence(self):
        for path in scenario_files("malformed"):
            with self.subTest(path=os.path.basename(path)):
                cli = Cli(["validate", path, "--format", "json"])
                self.assertEqual(cli.code, 2)
                with self.assertRaises(dwdp.Error) as caught:
                    dwdp.validate(path)
                self.assertEqual(str(caught.exception), "dwdp: " + cli.error_sentence())

    def test_a_missing_file_is_not_found(self):
        with self.assertRaises(dwdp.Error) as caught:
            dwdp.validate(os.path.join(support.SCENARIOS, "no-such-scenario.yaml"))
        self.assertEqual(caught.exception.code, "not_found")

    def test_a_dict_equals_the_same_file(self):
        for fields in ({}, {"num_experts_per_worker": 5}):  # valid, then a gap
            scenario = small_scenario(**fields)
            with self.subTest(fields=fields), ScenarioFile(scenario) as path:
                cli = Cli(["validate", path, "--format", "json"])
                self.assertEqual(dwdp.validate(scenario), cli.json)
        self.assertFalse(dwdp.validate(small_scenario(num_experts_per_worker=5))["valid"])

    def test_a_malformed_dict_raises_with_the_position(self):
        scenario = small_scenario()
        scenario["dwdp"]["num_buffers"] = "three"
        with self.assertRaises(dwdp.Error) as caught:
            dwdp.validate(scenario)
        self.assertTrue(str(caught.exception).startswith("dwdp: <dict>:1:"), caught.exception)
        self.assertIn("num_buffers", str(caught.exception))


class RecipesTest(unittest.TestCase):
    def test_equal_the_cli(self):
        for d, n in ((2, 16), (3, 256), (4, 64), (8, 2), (7, 100)):
            with self.subTest(dwdp_size=d, num_experts=n):
                cli = Cli(["recipes", "--dwdp-size", str(d), "--num-experts", str(n),
                           "--format", "json"])
                self.assertEqual(dwdp.recipes(d, n), cli.json)

    def test_uniform_recipe_first_when_d_divides_n(self):
        # (d-1) * stride + size = N: for d = 2, N = 16 the uniform 8/8 comes first.
        self.assertEqual(dwdp.recipes(2, 16)["recipes"][0],
                         {"num_experts_per_worker": 8, "num_prefetch_experts": 8, "overlap": 0})

    def test_out_of_range_arguments_are_refused(self):
        for d, n in ((1, 16), (2, 0), (70000, 16)):
            with self.subTest(dwdp_size=d, num_experts=n), self.assertRaises(dwdp.Error):
                dwdp.recipes(d, n)


class LayoutTest(unittest.TestCase):
    def test_every_valid_scenario_equals_the_cli(self):
        compared = 0
        for path in scenario_files():
            cli = Cli(["layout", path, "--format", "json"])
            with self.subTest(path=os.path.basename(path)):
                if cli.code == 0:
                    self.assertEqual(dwdp.layout(path), cli.json)
                    compared += 1
                else:
                    with self.assertRaises(dwdp.Error):
                        dwdp.layout(path)
        self.assertGreater(compared, 25)

    def test_one_rank_equals_the_cli(self):
        path = os.path.join(support.SCENARIOS, "moe72-h100x2-40x32-modeb.yaml")
        cli = Cli(["layout", path, "--rank", "1", "--format", "json"])
        self.assertEqual(dwdp.layout(path, rank=1), cli.json)
        self.assertEqual([r["rank"] for r in dwdp.layout(path, rank=1)["ranks"]], [1])

    def test_a_rank_outside_the_group_is_refused(self):
        path = os.path.join(support.SCENARIOS, "moe72-h100x2-40x32-modeb.yaml")
        with self.assertRaises(dwdp.Error) as caught:
            dwdp.layout(path, rank=2)
        self.assertIn("rank 2 is outside the group of 2 ranks", str(caught.exception))

    def test_an_invalid_partition_raises_with_validates_document(self):
        path = os.path.join(support.SCENARIOS, "invalid", "gap.yaml")
        cli = Cli(["layout", path, "--format", "json"])
        self.assertEqual(cli.code, 1)
        with self.assertRaises(dwdp.Error) as caught:
            dwdp.layout(path)
        self.assertEqual(caught.exception.result, cli.json)
        self.assertEqual(caught.exception.result["error"]["check"], "gap")
        # In text form the CLI says why on stderr: the same sentence.
        self.assertEqual(str(caught.exception), "dwdp: " + Cli(["layout", path]).error_sentence())

    def test_a_config_lays_out_like_its_scenario(self):
        config = dwdp.Config(dwdp_size=2, num_experts_per_worker=9, num_prefetch_experts=7,
                             num_experts=16, moe_layers=(1, 2, 3, 4),
                             weights=[dwdp.Weight.raw("w13", 1572869),
                                      dwdp.Weight.raw("w2", 786432)])
        with ScenarioFile(config.to_scenario()) as path:
            cli = Cli(["layout", path, "--format", "json"])
        self.assertEqual(dwdp.layout(config), cli.json)


class PlanTest(unittest.TestCase):
    def test_every_scenario_equals_the_cli(self):
        planned = 0
        for path in scenario_files():
            cli = Cli(["plan", path, "--format", "json"])
            with self.subTest(path=os.path.basename(path)):
                if cli.code == 0:
                    self.assertEqual(dwdp.plan(path), cli.json)
                    planned += 1
                else:
                    with self.assertRaises(dwdp.Error) as caught:
                        dwdp.plan(path)
                    self.assertEqual(str(caught.exception), "dwdp: " + cli.error_sentence())
        self.assertGreater(planned, 20)

    def test_options_equal_the_cli(self):
        path = os.path.join(support.SCENARIOS, "qwen3-30b-h100x4-32x32.yaml")
        cli = Cli(["plan", path, "--format", "json", "--dwdp-sizes", "2,4", "--num-buffers",
                   "2,3", "--tokens-per-rank", "4096,16384", "--contention", "ascending",
                   "--tokens-cv", "0.2", "--all-recipes", "--recommend", "--objective",
                   "smallest", "--hardware", "h200-sxm"])
        self.assertEqual(cli.code, 0, cli.stderr)
        ours = dwdp.plan(path, dwdp_sizes=[2, 4], num_buffers=[2, 3],
                         tokens_per_rank=[4096, 16384], contention="ascending", tokens_cv=0.2,
                         all_recipes=True, recommend=True, objective="smallest",
                         hardware="h200-sxm")
        self.assertEqual(ours, cli.json)
        # The options changed the sweep: only d = 2 and 4, only k = 2 and 3.
        self.assertEqual({c["dwdp_size"] for c in ours["candidates"]}, {2, 4})
        self.assertEqual({c["num_buffers"] for c in ours["candidates"]}, {2, 3})

    def test_max_dwdp_size_and_sequence_lengths_equal_the_cli(self):
        path = os.path.join(support.SCENARIOS, "dsv3-nvfp4-gb200-d4-64x64.yaml")
        cli = Cli(["plan", path, "--format", "json", "--max-dwdp-size", "4",
                   "--sequence-length", "8192,16384"])
        self.assertEqual(cli.code, 0, cli.stderr)
        self.assertEqual(dwdp.plan(path, max_dwdp_size=4, sequence_lengths=[8192, 16384]),
                         cli.json)

    def test_an_unknown_hardware_raises_the_cli_sentence(self):
        path = os.path.join(support.SCENARIOS, "default.yaml")
        cli = Cli(["plan", path, "--format", "json", "--hardware", "no-such-gpu"])
        self.assertEqual(cli.code, 2)
        with self.assertRaises(dwdp.Error) as caught:
            dwdp.plan(path, hardware="no-such-gpu")
        self.assertEqual(str(caught.exception), "dwdp: " + cli.error_sentence())

    def test_bad_options_are_refused_with_a_sentence(self):
        path = os.path.join(support.SCENARIOS, "default.yaml")
        cases = [({"dwdp_sizes": [1]}, "plan option 'dwdp_sizes' must be a list of integers in "
                                       "[2, 4096]; got [1]"),
                 ({"contention": "zigzag"}, "plan option 'contention' must be one of rotate, "
                                            "ascending, round_robin"),
                 ({"tokens_cv": 11}, "plan option 'tokens_cv' must be a number in [0, 10]"),
                 ({"objective": "fastest"}, "plan option 'objective' must be one of throughput")]
        for options, sentence in cases:
            with self.subTest(options=options), self.assertRaises(dwdp.Error) as caught:
                dwdp.plan(path, **options)
            self.assertIn(sentence, str(caught.exception))


if __name__ == "__main__":
    unittest.main()
