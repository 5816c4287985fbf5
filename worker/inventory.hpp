#pragma once
// What ThingsBoard and hawkBit hold, read page by page for `devicegate-ctl reconcile`
// (docs/integrations.md §G). The reads go through the worker's authenticated clients (the
// shared ThingsBoard session with its token refresh, hawkBit's Basic authentication and its
// login gate), so the ctl uses exactly the worker's credentials and failure classification.
#include "hawkbit_client.hpp"
#include "thingsboard_client.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace devicegate::worker {

struct inventory_options {
    /// ThingsBoard's pageSize and hawkBit's limit. ThingsBoard has no maximum for
    /// /api/tenant/devices (dao Validator.validatePageLink only wants >= 1); hawkBit silently
    /// caps the limit at 500 (MgmtRestConstants.REQUEST_PARAMETER_PAGING_MAX_LIMIT).
    std::size_t page_size = 100;
    /// A bound against a server that never says "last page".
    std::size_t max_pages = 1000000;
    /// Tries per request for retryable failures (transport, 408, 429, 5xx), with a doubling wait.
    int attempts = 3;
    std::chrono::milliseconds backoff{500};
};

/// One device or target as a backend lists it.
struct inventory_entry {
    std::string name;            // ThingsBoard device name / hawkBit controllerId
    std::string thingsboard_id;  // ThingsBoard's device UUID ("" for hawkBit)
};

/// Every device of the tenant: GET /api/tenant/devices?pageSize=N&page=P&sortProperty=createdTime
/// &sortOrder=ASC until hasNext is false. Creation order (then id, ThingsBoard's own tiebreak):
/// devices created during the scan land on later pages instead of shifting the earlier ones; a
/// device listed twice (a deletion shifted a page) is kept once. Throws target_failure.
std::vector<inventory_entry> list_thingsboard_devices(thingsboard_client& client, const inventory_options& options);

/// Every target: GET /rest/v1/targets?offset=O&limit=N&sort=createdAt:ASC,controllerId:ASC until a
/// page comes back empty or the offset reaches `total`. Throws target_failure.
std::vector<inventory_entry> list_hawkbit_targets(hawkbit_client& client, const inventory_options& options);

/// Point lookups that confirm a finding of the paged scan (which a concurrent change may have
/// skewed). `id` must be a safe device id (no escaping). Throw target_failure.
bool thingsboard_device_exists(thingsboard_client& client, const std::string& id, const inventory_options& options);
bool hawkbit_target_exists(hawkbit_client& client, const std::string& id, const inventory_options& options);

/// The credentials a ThingsBoard device holds (GET /api/device/{uuid}/credentials).
struct thingsboard_credentials {
    std::string type;                // X509_CERTIFICATE, ACCESS_TOKEN, ...
    std::string fingerprint_sha256;  // of the X.509 DER, lower-case hex; "" for other types
};
/// nullopt when the device is gone (404). Throws target_failure.
std::optional<thingsboard_credentials> read_thingsboard_credentials(thingsboard_client& client,
                                                                    const std::string& device_uuid,
                                                                    const inventory_options& options);

/// SHA-256 (lower-case hex) of the DER in ThingsBoard's bare base64 credentials value
/// (DeviceCredentialsServiceImpl.formatCertData); "" if it is not base64.
std::string thingsboard_value_fingerprint(const std::string& bare_base64);

}  // namespace devicegate::worker
