// The whole freestanding core.
#pragma once

#include "ptkit/access.hpp"
#include "ptkit/addr.hpp"
#include "ptkit/alloc.hpp"
#include "ptkit/arch/aarch64.hpp"
#include "ptkit/arch/riscv.hpp"
#include "ptkit/arch/x86_64.hpp"
#include "ptkit/attrs.hpp"
#include "ptkit/format.hpp"
#include "ptkit/options.hpp"
#include "ptkit/space.hpp"
#include "ptkit/status.hpp"
#include "ptkit/tlb.hpp"
#include "ptkit/writer.hpp"
