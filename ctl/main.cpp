#include "ctl.hpp"

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    const char* url = std::getenv("DEVICEGATE_REDIS_URL");
    const char* prefix = std::getenv("DEVICEGATE_REDIS_PREFIX");
    return devicegate::ctl::run(args, std::cout, std::cerr, url ? url : "", prefix ? prefix : "");
}
