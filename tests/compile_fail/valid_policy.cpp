// SPDX-License-Identifier: Apache-2.0
#include "policy_cases.hpp"
static_assert(sa::MaskPolicy<Policy>);
int main() { use_policy(); }
