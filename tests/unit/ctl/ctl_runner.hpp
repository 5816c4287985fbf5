#pragma once
// devicegate-ctl run in-process (ctl::run takes its streams), for the ctl unit tests.
#include "ctl.hpp"

#include <sstream>
#include <string>
#include <vector>

namespace devicegate::test {

struct ctl_result {
    int code;
    std::string out;
    std::string err;
};

inline ctl_result run_ctl(const std::string& redis_url, const std::vector<std::string>& args,
                          const std::string& prefix = "") {
    std::ostringstream out, err;
    const int code = ctl::run(args, out, err, redis_url, prefix);
    return {code, out.str(), err.str()};
}

}  // namespace devicegate::test
