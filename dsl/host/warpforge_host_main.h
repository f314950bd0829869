// warpforge host harness: `main` of the sanitized build, a separate process (ASan cannot be
// loaded into a process that did not start with it). Protocol (little-endian):
//   request file argv[1]: u32 grid[3], block[3], dynamic_shared_bytes, stack_bytes;
//     u32 count; then per C parameter: u32 kind (0 = buffer: the parameter points to a
//     fresh allocation holding the bytes; 1 = value: the parameter is the bytes),
//     u64 size, bytes.
//   response file argv[2]: every buffer's bytes after the launch, in order.
// Exit status 0; 1 with the harness's message on stderr; a sanitizer report aborts.
#pragma once

#include <vector>

static bool wf_read(FILE* f, void* p, size_t n) {
    return fread(p, 1, n, f) == n;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s REQUEST RESPONSE\n", argv[0]);
        return 2;
    }
    FILE* in = fopen(argv[1], "rb");
    if (!in) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 2;
    }
    wf_host::LaunchSpec spec;
    uint32_t count = 0;
    if (!wf_read(in, &spec, sizeof spec) || !wf_read(in, &count, 4)) return 2;
    std::vector<void*> params(count);
    std::vector<std::pair<void*, uint64_t>> buffers;
    for (uint32_t i = 0; i < count; ++i) {
        uint32_t kind = 0;
        uint64_t size = 0;
        if (!wf_read(in, &kind, 4) || !wf_read(in, &size, 8)) return 2;
        // Each buffer is its own allocation of its exact size, so ASan sees its end.
        void* data = malloc(size ? size : 1);
        if (!wf_read(in, data, size)) return 2;
        if (kind == 0) {
            void** slot = static_cast<void**>(malloc(sizeof(void*)));
            *slot = data;
            params[i] = slot;
            buffers.emplace_back(data, size);
        } else {
            params[i] = data;
        }
    }
    fclose(in);
    char error[4096] = {0};
    int status = wf_host_launch(&spec, params.data(), error, sizeof error);
    if (status != 0) {
        fprintf(stderr, "%s\n", error);
        return 1;
    }
    FILE* out = fopen(argv[2], "wb");
    if (!out) return 2;
    for (auto& b : buffers) fwrite(b.first, 1, b.second, out);
    fclose(out);
    return 0;
}
