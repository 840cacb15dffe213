// SPDX-License-Identifier: Apache-2.0
#define DROP_CLASSIFY
#include "policy_cases.hpp"
int main() { use_policy(); }
