#pragma once
// Former name of crl_set.hpp (it holds only CRLs); kept for files not yet updated.
#include "devicegate/crl_set.hpp"
