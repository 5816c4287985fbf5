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
/// XLEN devicegate:jobs, -1 while Redis does not answer.
long long stream_length(const redis_server& redis);

}  // namespace devicegate::itest
