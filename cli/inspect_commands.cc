// dwdp validate | recipes | layout: check a partition and show its layout before any GPU time.

#include <algorithm>
#include <iostream>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/common.h"
#include "core/layout/layout.h"
#include "core/partition/partition.h"
#include "core/report/inspect_json.h"
#include "core/report/table.h"
#include "core/util/bytes.h"

namespace dwdp::cli {
namespace {

std::string RecipeList(const std::vector<Recipe>& recipes, size_t max_shown) {
  std::string out;
  for (size_t i = 0; i < recipes.size() && i < max_shown; ++i) {
    absl::StrAppend(&out, i ? ", " : "", recipes[i].num_experts_per_worker, "/",
                    recipes[i].num_prefetch_experts, " (overlap ", recipes[i].overlap(), ")");
  }
  if (recipes.size() > max_shown) absl::StrAppend(&out, ", ... (", recipes.size(), " in all)");
  return out;
}

std::string ScenarioHeader(const Scenario& s) {
  const std::string model = s.model.preset.empty() ? s.model.display_name : s.model.preset;
  return absl::StrFormat(
      "scenario  %s (%s)\n"
      "model     %s: %d experts, %d MoE layers, %s per expert in %d weights\n"
      "dwdp      dwdp_size %d, %d/%d, %d group(s), %d buffers, %s pool pages, %s schedule\n"
      "hardware  %s\n",
      s.name, s.source_file, model, s.model.num_experts, s.model.moe_layers.size(),
      FormatBytes(s.model.expert_bytes()), s.model.weights.size(), s.dwdp.dwdp_size,
      s.dwdp.num_experts_per_worker, s.dwdp.num_prefetch_experts, s.dwdp.num_groups,
      s.dwdp.num_buffers, FormatBytes(s.dwdp.pool_page_bytes),
      ContentionModeName(s.dwdp.contention.mode), s.hardware.name);
}

// Per-rank summary table shared by validate and layout.
std::string RankTable(const Scenario& s, const GroupLayout& layout) {
  TextTable table({"rank", "experts", "count", "local/layer", "pool pages/layer", "pulled/layer",
                   "local, all layers", "pool, " + std::to_string(layout.num_buffers) + " slots"});
  const uint64_t layers = static_cast<uint64_t>(layout.num_layers());
  for (const RankLayout& r : layout.ranks) {
    uint64_t pool_pages = 0;
    for (uint64_t pages : r.slot_pages) pool_pages += pages;
    const uint64_t pulled =
        static_cast<uint64_t>(s.model.num_experts - r.range.count()) * s.model.expert_bytes();
    table.AddRow({std::to_string(r.rank), absl::StrFormat("[%d, %d)", r.range.start, r.range.end),
                  std::to_string(r.range.count()), FormatBytes(r.local_bytes_per_layer),
                  std::to_string(r.pool_pages_per_layer), FormatBytes(pulled),
                  FormatBytes(r.local_bytes_per_layer * layers),
                  FormatBytes(pool_pages * layout.pool_page_bytes)});
  }
  return table.Render({0, 1});
}

// Runs the partition checks with the optional world size; prints the failure if any.
bool ValidateOrReport(const Scenario& scenario, std::optional<int64_t> world_size, Format format,
                      CommandContext& ctx) {
  PartitionInput input = PartitionInput::FromScenario(scenario);
  input.world_size = world_size;
  const std::optional<PartitionError> error = ValidatePartition(input);
  if (!error) return true;
  ctx.exit_code = kExitInvalid;
  if (format == Format::kJson) {
    PrintJson(ValidateJson(scenario, world_size));
    return false;
  }
  std::cerr << "error: " << scenario.source_file << ": " << error->check << ": " << error->message
            << "\n";
  std::cout << "invalid (" << error->check << ")\n";
  if (!error->recipes.empty()) {
    std::cout << "valid recipes for dwdp_size " << input.dwdp_size << " and " << input.num_experts
              << " experts: " << RecipeList(error->recipes, 5) << "\n";
  }
  return false;
}

}  // namespace

void RegisterValidate(CLI::App& app, CommandContext& ctx) {
  struct Options {
    std::string scenario;
    std::optional<int64_t> world_size;
    std::string format;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("validate", "Check a scenario's DWDP partition");
  cmd->add_option("scenario", opts->scenario, "Scenario YAML file")->required();
  cmd->add_option("--world-size", opts->world_size, "Ranks in the job (enables group checks)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  AddFormatOption(*cmd, opts->format);
  cmd->callback([opts, &ctx] {
    const Format format = ParseFormat(opts->format);
    auto scenario = LoadScenarioOrReport(opts->scenario, ctx);
    if (!scenario) return;
    if (format == Format::kJson) {
      const nlohmann::json doc = ValidateJson(*scenario, opts->world_size);
      if (!doc["valid"].get<bool>()) {
        ctx.exit_code = kExitInvalid;
        const nlohmann::json& error = doc["error"];
        if (error["check"] == "layout")
          ReportError(error["message"].get<std::string>(), kExitInvalid, ctx);
      }
      PrintJson(doc);
      return;
    }
    if (!ValidateOrReport(*scenario, opts->world_size, format, ctx)) return;
    auto layout = ComputeGroupLayout(*scenario);
    if (!layout.ok()) return ReportError(layout.status(), kExitInvalid, ctx);
    std::cout << ScenarioHeader(*scenario) << "\n" << RankTable(*scenario, *layout) << "\n";
    const int64_t overlap =
        scenario->dwdp.num_experts_per_worker - scenario->dwdp.num_prefetch_experts;
    std::cout << "valid: every expert has an owner"
              << (overlap > 0 ? absl::StrCat("; neighbours share ", overlap, " expert(s)")
                              : std::string("; no overlap"))
              << (opts->world_size ? absl::StrCat("; world size ", *opts->world_size, " fits ",
                                                  scenario->dwdp.num_groups, " group(s)")
                                   : std::string())
              << "\n";
    if (overlap > 0) {
      // Who serves how much under the scenario's owner policy (dwdp.owner).
      auto partition = Partition::Create(PartitionInput::FromScenario(*scenario));
      if (partition.ok()) {
        const std::vector<int64_t> served = ServedExperts(*partition, scenario->dwdp.owner);
        const auto hottest = std::max_element(served.begin(), served.end());
        std::cout << absl::StrFormat(
            "owner %s: rank %d serves the most, %d expert copies per layer (the mean is %.0f)\n",
            OwnerPolicyName(scenario->dwdp.owner), hottest - served.begin(), *hottest,
            static_cast<double>(std::accumulate(served.begin(), served.end(), int64_t{0})) /
                static_cast<double>(served.size()));
      }
    }
  });
}

void RegisterRecipes(CLI::App& app, CommandContext& ctx) {
  struct Options {
    int64_t dwdp_size = 0;
    int64_t num_experts = 0;
    std::string format;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("recipes", "List valid (size, stride) recipes");
  cmd->add_option("--dwdp-size", opts->dwdp_size, "Ranks per DWDP group")
      ->required()
      ->check(CLI::Range(int64_t{2}, int64_t{65536}));
  cmd->add_option("--num-experts", opts->num_experts, "Routed experts per MoE layer")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  AddFormatOption(*cmd, opts->format);
  cmd->callback([opts, &ctx] {
    const auto recipes = Recipes(opts->dwdp_size, opts->num_experts);
    if (ParseFormat(opts->format) == Format::kJson) {
      PrintJson(RecipesJson(opts->dwdp_size, opts->num_experts));
    } else if (!recipes.empty()) {
      std::cout << "recipes for dwdp_size " << opts->dwdp_size << " and " << opts->num_experts
                << " experts, least overlap first\n\n";
      TextTable table({"num_experts_per_worker", "num_prefetch_experts", "overlap", "note"});
      for (const Recipe& r : recipes) {
        table.AddRow({std::to_string(r.num_experts_per_worker),
                      std::to_string(r.num_prefetch_experts), std::to_string(r.overlap()),
                      r.overlap() == 0 ? "uniform" : ""});
      }
      std::cout << table.Render({3});
    }
    if (recipes.empty()) {
      ReportError(absl::StrFormat("no recipe exists for dwdp_size %d and %d experts: every rank "
                                  "needs at least one expert (dwdp_size <= num_experts)",
                                  opts->dwdp_size, opts->num_experts),
                  kExitInvalid, ctx);
    }
  });
}

void RegisterLayout(CLI::App& app, CommandContext& ctx) {
  struct Options {
    std::string scenario;
    std::optional<int64_t> rank;
    std::string format;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("layout", "Show the page-aligned layout of every rank");
  cmd->add_option("scenario", opts->scenario, "Scenario YAML file")->required();
  cmd->add_option("--rank", opts->rank, "Show only this rank")
      ->check(CLI::Range(int64_t{0}, int64_t{65535}));
  AddFormatOption(*cmd, opts->format);
  cmd->callback([opts, &ctx] {
    const Format format = ParseFormat(opts->format);
    auto scenario = LoadScenarioOrReport(opts->scenario, ctx);
    if (!scenario) return;
    if (!ValidateOrReport(*scenario, std::nullopt, format, ctx)) return;
    auto layout = ComputeGroupLayout(*scenario);
    if (!layout.ok()) return ReportError(layout.status(), kExitInvalid, ctx);
    if (opts->rank && *opts->rank >= static_cast<int64_t>(layout->ranks.size())) {
      return ReportError(absl::StrFormat("--rank %d is outside the group of %d ranks", *opts->rank,
                                         layout->ranks.size()),
                         kExitUsage, ctx);
    }
    const auto shown = [&](const RankLayout& r) { return !opts->rank || *opts->rank == r.rank; };
    if (format == Format::kJson) {
      auto doc = LayoutJson(*scenario, opts->rank);
      if (!doc.ok()) return ReportError(doc.status(), kExitInvalid, ctx);
      PrintJson(*doc);
      return;
    }
    std::cout << ScenarioHeader(*scenario) << "granularity " << FormatBytes(layout->granularity)
              << ", pool page " << FormatBytes(layout->pool_page_bytes) << "\n\n"
              << RankTable(*scenario, *layout);
    for (const RankLayout& r : layout->ranks) {
      if (!shown(r)) continue;
      std::cout << absl::StrFormat("\nrank %d, experts [%d, %d), bytes:\n", r.rank, r.range.start,
                                   r.range.end);
      TextTable table({"weight", "per expert", "page_start", "page_end", "lead", "trail",
                       "local handle", "pre", "pre pad", "post", "post pad", "VA total"});
      for (const WeightLayout& w : r.weights) {
        table.AddRow({w.name, std::to_string(w.expert_bytes), std::to_string(w.page_start),
                      std::to_string(w.page_end), FormatBytes(w.leading_edge),
                      FormatBytes(w.trailing_edge), FormatBytes(w.mnnvl_size),
                      FormatBytes(w.pre_size), FormatBytes(w.pre_padding), FormatBytes(w.post_size),
                      FormatBytes(w.post_padding), FormatBytes(w.total_size)});
      }
      std::cout << table.Render();
    }
  });
}

}  // namespace dwdp::cli
