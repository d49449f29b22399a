/* include/dwdp/dwdp_c.h from C (C11, not C++): the header compiles as C and libdwdp.so's C
 * entry points link and answer without a GPU. The Python tests (tests/python/c_abi_test.py)
 * cover the error paths in depth; this one proves the header and the exports. */

#include <dwdp/dwdp_c.h>
#include <stdio.h>
#include <string.h>

static int failures = 0;

static void expect(int condition, const char* what) {
  printf("%s: %s\n", condition ? "ok" : "FAILED", what);
  if (!condition) ++failures;
}

static int starts_with(const char* text, const char* prefix) {
  return strncmp(text, prefix, strlen(prefix)) == 0;
}

int main(void) {
  expect(dwdp_abi_version() == DWDP_C_ABI_VERSION, "the library's ABI version is the header's");

  char* json = NULL;
  expect(dwdp_recipes(2, 16, &json) == DWDP_OK && json != NULL, "recipes for d = 2, 16 experts");
  expect(json != NULL && strstr(json, "\"num_experts_per_worker\":8") != NULL,
         "the uniform recipe 8/8 is listed");
  expect(strcmp(dwdp_last_error(), "") == 0, "no error after a call that succeeded");
  dwdp_free(json);

  json = NULL;
  expect(dwdp_recipes(1, 16, &json) == DWDP_ERROR_INVALID_ARGUMENT && json == NULL,
         "dwdp_size 1 is refused");
  expect(starts_with(dwdp_last_error(), "dwdp: dwdp_size is 1"), dwdp_last_error());

  dwdp_scenario scenario = {NULL, "name: inline\nmodel: {num_experts: 16}\n", "inline.yaml"};
  expect(dwdp_validate(&scenario, -1, &json) == DWDP_ERROR_INVALID_ARGUMENT,
         "an incomplete scenario text is refused");
  expect(starts_with(dwdp_last_error(), "dwdp: inline.yaml:"), dwdp_last_error());

  int64_t layers[] = {1, 2, 4};
  dwdp_weight weights[] = {{"w13", 1572869}, {"w2", 786433}};
  dwdp_config config;
  dwdp_config_init(&config);
  config.dwdp_size = 2;
  config.num_experts_per_worker = 5;
  config.num_prefetch_experts = 7;
  config.num_experts = 16;
  config.moe_layers = layers;
  config.num_moe_layers = 3;
  config.weights = weights;
  config.num_weights = 2;
  expect(dwdp_config_check(&config) == DWDP_ERROR_INVALID_ARGUMENT, "a gap is refused");
  expect(starts_with(dwdp_last_error(), "dwdp: gap: "), dwdp_last_error());

  dwdp_runtime* runtime = (dwdp_runtime*)&config; /* must be reset to NULL */
  expect(dwdp_runtime_create(&config, NULL, 0, NULL, &runtime) == DWDP_ERROR_INVALID_ARGUMENT &&
             runtime == NULL,
         "create refuses the config before any GPU work, and leaves no runtime");
  expect(dwdp_runtime_prime(NULL, NULL) == DWDP_ERROR_INVALID_ARGUMENT, "prime of NULL");
  dwdp_runtime_destroy(NULL);
  dwdp_free(NULL);
  return failures == 0 ? 0 : 1;
}
