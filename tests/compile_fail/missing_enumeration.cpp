// SPDX-License-Identifier: Apache-2.0
#define DROP_ENUMERATION
#include "policy_cases.hpp"
int main() { use_policy(); }
