#pragma once

// The prefetch-efficiency phase of `dwdp calibrate --only prefetch`, as pure functions over what
// the ranks timed: every rank pulls one piece from every peer in the rotation order (step s reads
// peer (rank + s) mod d), started three ways (all released by one flag, after a barrier, or
// unsynchronised with an injected drift). What decides the rate is how many readers each source
// GPU serves at once: the rotation is a Latin square only while the ranks keep in step, and a
// source read by several GPUs serves each of them less than one pair's rate.
//
// The intervals are on one clock for every rank (the host's steady clock of one machine); the
// functions below count, for every copy, the readers its source had while it ran, and compare
// its rate with the pair rate of the same reader and source measured alone.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dwdp {

// How the ranks start a rotation.
enum class PrefetchStart {
  // A spin kernel on every rank's stream waits on a flag word that rank 0 sets once every rank
  // has queued its copies behind it: the copies start within a microsecond of each other.
  kSync,
  // A group barrier, then every rank issues (the start skew is the barrier's exit skew).
  kBarrier,
  // No synchronisation; rank r starts r times the injected drift late.
  kFree,
};
const char* PrefetchStartName(PrefetchStart start);
// "sync", "barrier", "free": InvalidArgument naming the three otherwise.
absl::StatusOr<PrefetchStart> ParsePrefetchStart(absl::string_view name);

// The delay of rank `rank` in a free start with drift `drift_ns`: rank x drift_ns, so that each
// rank trails the one before it by the drift. At one step (a piece at the pair rate) each rank
// reads, one step late, the source its predecessor reads: with d >= 3 every source has two
// readers nearly all the time (d = 2 cannot share a source: each rank reads the other).
double PrefetchStartDelayNs(int64_t rank, double drift_ns);

// "0,0.25,1": the free starts' drifts in steps, each a number from 0 to 100, at most 16.
// InvalidArgument naming the first bad entry.
absl::StatusOr<std::vector<double>> ParsePrefetchDrifts(absl::string_view text);

// One copy of a rotation as it ran.
struct CopyInterval {
  int64_t reader = 0;
  int64_t source = 0;
  int64_t step = 0;  // 1 .. d-1
  double bytes = 0;
  double start_ns = 0;  // one clock for every rank
  double end_ns = 0;
};

// The readers a copy's source had while the copy ran (the copy itself included).
struct SourceReaders {
  double mean = 0;  // time-weighted over the copy's interval
  int64_t max = 0;
  // Part of the copy's time during which the source had two readers or more.
  double shared_fraction = 0;
};

// For every interval, in the same order, how many intervals of the same source overlapped it.
// Intervals that only touch (one ends where the next starts) do not overlap, nor do two that
// overlap by `min_overlap_ns` or less. An interval of no length has mean = max = 1 and
// shared_fraction 0.
std::vector<SourceReaders> ReadersPerSource(const std::vector<CopyInterval>& intervals,
                                            double min_overlap_ns = 0);

// The summaries below ignore overlaps this short: the ranks' clocks agree to about a
// microsecond (GPU timeline to host clock, per process), and one step's copy ends as the next
// begins.
inline constexpr double kPrefetchMinOverlapNs = 1000;

// Pair rates (bytes/s) by (reader, source), measured alone.
using PairRates = std::map<std::pair<int64_t, int64_t>, double>;

// One step of a rotation over all ranks and repetitions.
struct PrefetchStepSummary {
  int64_t step = 0;
  int64_t copies = 0;
  double mean_readers = 0;  // the copies' time-weighted readers, averaged
  int64_t max_readers = 0;
  double shared_fraction = 0;  // the copies' shared_fraction, averaged
  double efficiency = 0;       // median over the copies of achieved rate / pair rate
};

// One way of starting, over its repetitions.
struct PrefetchRunSummary {
  std::string name;  // "sync", "barrier", "free", "free, drift 0.5 step"
  std::vector<PrefetchStepSummary> steps;
  // Prefetch efficiency: each rank's whole rotation (first start to last end) against the time
  // its pieces take at its pair rates one after the other; the median and the worst over the
  // ranks and repetitions.
  double efficiency = 0;
  double worst_efficiency = 0;
  double mean_readers = 0;  // over every copy
  // The largest difference between two ranks' first starts, median over the repetitions.
  double start_skew_ns = 0;
};

// Summarises the repetitions of one run (each a list of every rank's copies). A copy whose pair
// has no rate in `pairs` is counted for the readers but not for the efficiencies. InvalidArgument
// when there are no copies or an interval ends before it starts.
absl::StatusOr<PrefetchRunSummary> SummarizePrefetchRun(
    const std::string& name, const std::vector<std::vector<CopyInterval>>& repetitions,
    const PairRates& pairs);

// The simulator's egress fan-out term fitted to the copies whose source had two readers or
// more for nearly all of their time (shared_fraction >= kFanoutSharedFraction): with n readers
// the simulator gives each reader egress_bw x egress_fanout_efficiency / n (when that is below
// its pair rate), so each such copy gives n x rate / egress_bw, where rate is what it got while
// shared (its bytes less those of its part alone, taken at the pair rate, over its shared
// time) and n its readers then; the fit is their median, capped at 1.
inline constexpr double kFanoutSharedFraction = 0.9;
struct FanoutFit {
  int64_t copies = 0;       // copies that entered the fit
  double per_reader = 0;    // median rate while shared / pair rate of those copies
  double mean_readers = 0;  // their readers while shared, averaged
  double egress_fanout_efficiency = 0;
  bool capped = false;  // the fit came out above 1: egress_bw alone already explains it
};
// `egress_bw`: the profile's egress port (bytes/s; the pair rate when the profile has none).
// Nullopt when no copy had a shared source for long enough (a synchronised start, or d = 2
// without drift).
std::optional<FanoutFit> FitEgressFanout(const std::vector<std::vector<CopyInterval>>& copies,
                                         const PairRates& pairs, double egress_bw);

}  // namespace dwdp
