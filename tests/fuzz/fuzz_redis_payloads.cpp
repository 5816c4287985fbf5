// libFuzzer target: what DeviceGate reads back from Redis and its own journal: deny-list
// change messages, revocation entries (as devicegate-ctl reads them), journal lines,
// first-connect jobs (as the worker reads them), serial numbers.
#include "devicegate/denylist.hpp"
#include "devicegate/job.hpp"
#include "devicegate/pki.hpp"
#include "devicegate/revocation_store.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace devicegate;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        (void)parse_denylist_change(text);
    } catch (const std::invalid_argument&) {
    }
    (void)parse_revocation_entry(text);  // never throws: nullopt for what DeviceGate did not write
    try {
        (void)parse_journal_line(text);
    } catch (const std::invalid_argument&) {
    }
    try {
        (void)parse_job(text);
    } catch (const std::invalid_argument&) {
    }
    if (auto hex = normalize_serial_hex(text)) (void)serial_key_from_hex(*hex);
    return 0;
}
