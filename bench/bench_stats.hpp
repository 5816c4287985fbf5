#pragma once
// Small measuring pieces the broker benchmarks share: milliseconds of a duration, percentiles,
// a process's CPU time and the machine's load from /proc.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace devicegate::bench {

inline double ms(std::chrono::steady_clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

/// The q-quantile (nearest rank, 0 <= q <= 1) of `v`; 0 for no values.
inline double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

/// The q-quantile (0 <= q <= 1) interpolated between the two nearest ranks, as quartiles and
/// medians are usually given (the median of an even count is the mean of the middle two); 0
/// for no values.
inline double quantile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const double at = q * static_cast<double>(v.size() - 1);
    const auto below = static_cast<std::size_t>(at);
    if (below + 1 >= v.size()) return v.back();
    return v[below] + (at - static_cast<double>(below)) * (v[below + 1] - v[below]);
}
inline double median(std::vector<double> v) { return quantile(std::move(v), 0.5); }

struct latency {
    double p50, p99, max;
};
inline latency summarize(const std::vector<double>& v) { return {percentile(v, 0.5), percentile(v, 0.99), percentile(v, 1.0)}; }

/// utime + stime of the whole process (all threads, also finished ones), in seconds.
inline double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream fields(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int i = 3; fields >> field; ++i) {  // field 3 is the state
        if (i == 14) utime = std::stoull(field);
        if (i == 15) {
            stime = std::stoull(field);
            break;
        }
    }
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

/// /proc/loadavg's 1, 5 and 15 minute load averages, "1.20 0.80 0.50".
inline std::string load_average() {
    std::ifstream in("/proc/loadavg");
    std::string one, five, fifteen;
    in >> one >> five >> fifteen;
    return one + " " + five + " " + fifteen;
}

}  // namespace devicegate::bench
