#pragma once
// The worker's check of a job before it registers anything. The job stream is writable by
// whoever can write Redis, so a job is only a claim: its certificate must pass the same
// chain verification the broker applies at connect (tenant_trust: issued by the tenant
// Sub-CA, chain to the Root, a device certificate), name the job's device (CN = device_id),
// be the one the fingerprint names, and be within its validity (with the clock skew).
#include "devicegate/job.hpp"
#include "devicegate/reason.hpp"
#include "devicegate/tenant_trust.hpp"

#include <chrono>
#include <ctime>
#include <string>

namespace devicegate {

struct job_verdict {
    reason why = reason::internal_error;  // ok, or why the job is not trusted
    std::string detail;                   // for the log and the dead letter; never secret
};

/// Never throws for hostile input: every refusal is a verdict.
job_verdict verify_job_certificate(const tenant_trust& trust, const job& j, std::time_t now, std::chrono::seconds skew);

}  // namespace devicegate
