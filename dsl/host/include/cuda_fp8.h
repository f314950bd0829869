// warpforge host harness: the types and conversions of <cuda_fp8.h> that generated code uses are
// defined in warpforge_host_types.h; this file only satisfies the include.
#pragma once
