#pragma once
// Helpers for tests that look at the first-connect stream: generated devices and the jobs
// Redis holds for them.
#include "harness.hpp"

#include <map>
#include <string>
#include <vector>

namespace devicegate::itest {

/// `count` devices <prefix>0.. with certificates issued by Sub-CA A in a test directory.
std::vector<device_files> make_devices(const std::string& prefix, int count);
/// Every job in devicegate:jobs: device id -> job types, in stream order.
std::map<std::string, std::vector<std::string>> jobs_in(const redis_server& redis);
/// Scripts Redis has run (EVALSHA, and EVAL after a NOSCRIPT): one per certificate a broker
/// handed to its job producer. When every handed certificate has had its script run, no job can
/// still be on its way: a wait on this replaces a fixed "anything late would show up now" sleep.
/// -1 while Redis does not answer.
long long scripts_run(const redis_server& redis);
/// XLEN devicegate:jobs, -1 while Redis does not answer.
long long stream_length(const redis_server& redis);

}  // namespace devicegate::itest
