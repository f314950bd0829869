//! T1 for prepacking: `gather_rows` and `kv_page_write_{f32,f16,bf16}` on the CPU interpreter
//! over their whole tunable space at the families' ragged check problems (exact), the row
//! gather on f32/f16/bf16 tables through the 128-bit bit view, and the packed prefill end
//! to end: prompts packed (with an empty one, continuing cached prefixes), Q rotated, K/V
//! written into pages by the page writer with RoPE fused, in two chunks, then flash
//! attention over the pages equal bit for bit to flash attention over contiguous K/V rotated
//! by the RoPE kernel.

use warpforge::dsl::{Buffer, Config, Device, Element};
use warpforge::kernels::attention::{self, AttnBuffers, AttnShape};
use warpforge::kernels::prepack::{
    best_fit_decreasing, check_ids, launch_gather_rows, launch_kv_page_write, pack_prompts,
    PageWriteBuffers, PageWriteShape,
};
use warpforge::kernels::rope::{launch_rope, Rope, RopeFloat, RopeShape};
use warpforge::kernels::{family::Lcg, find};
use warpforge::prelude::{bf16, f16, Float};

/// Every config of `gather_rows` and of each page-writer instance on every check problem.
#[test]
fn whole_space_of_every_kernel_is_exact() {
    let device = Device::cpu();
    let mut runs = 0;
    for name in [
        "gather_rows",
        "kv_page_write_f32",
        "kv_page_write_f16",
        "kv_page_write_bf16",
    ] {
        let k = find(name).unwrap_or_else(|| panic!("{name} is not registered"));
        for problem in k.problems() {
            for config in k.configs() {
                let report = k.check(&device, &config, &problem).unwrap();
                assert!(
                    report.passed(),
                    "{name} [{config}] {}: {report}",
                    problem.name
                );
                runs += 1;
            }
        }
    }
    println!("{runs} (kernel, config, problem) runs exact");
}

/// The embedding lookup of a packed batch for each element type: rows of a `T` table
/// gathered through the 16-byte bit view, bit for bit.
fn gather_embeddings<T: Float + Element + PartialEq + std::fmt::Debug>(width: usize) {
    let device = Device::cpu();
    let vocab = 11;
    let mut rng = Lcg::for_dims(&[vocab, width], 1);
    let table: Vec<T> = (0..vocab * width)
        .map(|_| T::from_f32(rng.float(3.0)))
        .collect();
    let flat = [3u32, 10, 0, 4, 4, 7, 1, 2];
    // Prompts of 1, 0 (empty), 5 and 2 tokens, not in flat-array order.
    let packed = pack_prompts(&flat, &[7, 0, 2, 0], &[1, 0, 5, 2], None).unwrap();
    check_ids(&packed.token_ids, vocab).unwrap();
    assert_eq!(packed.cu_seqlens, vec![0, 1, 1, 6, 8]);
    assert_eq!(packed.positions, vec![0, 0, 1, 2, 3, 4, 0, 1]);
    let (tb, ids) = (
        device.upload(&table).unwrap(),
        device.upload(&packed.token_ids).unwrap(),
    );
    let mut out: Buffer<T> = device.zeros(packed.token_ids.len() * width).unwrap();
    for config in ["BLOCK=64,UNITS=1", "BLOCK=256,UNITS=4"] {
        let config = Config::parse(config).unwrap();
        launch_gather_rows(&device, &config, (&tb, &ids), &mut out, width).unwrap();
        let got = device.download(&out).unwrap();
        for (t, &id) in packed.token_ids.iter().enumerate() {
            let want = &table[id as usize * width..][..width];
            assert_eq!(&got[t * width..][..width], want, "{} token {t}", T::SCALAR);
        }
    }
    // A row that is not whole 16-byte words is refused.
    let err =
        launch_gather_rows(&device, &Config::new(), (&tb, &ids), &mut out, width - 2).unwrap_err();
    assert!(err.to_string().contains("multiple of 16 bytes"), "{err}");
}

#[test]
fn embedding_gather_for_each_element_type() {
    gather_embeddings::<f32>(12);
    gather_embeddings::<f16>(24);
    gather_embeddings::<bf16>(40);
}

/// One packed chunked prefill of `T`: sequences with cached prefixes `cached` and new tokens
/// `new` (one new chunk empty), causal GQA attention at head dim 64, pages of `page_size`.
fn paged_prefill_matches_contiguous<T: RopeFloat + PartialEq>(page_size: usize) {
    let device = Device::cpu();
    let (heads, kv_heads, d) = (4, 2, 64);
    let cached = [0usize, 6, 17, 3];
    let new = [5usize, 1, 12, 0];
    let full: Vec<usize> = cached.iter().zip(&new).map(|(c, n)| c + n).collect();
    let rope = Rope::llama3_1(d);
    let table_rows = *full.iter().max().unwrap();
    let table = device.upload(&rope.table(table_rows)).unwrap();
    let mut rng = Lcg::for_dims(&[page_size, T::SCALAR.size_bytes()], 9);
    let mut gen = |n: usize| -> Vec<T> { (0..n).map(|_| T::from_f32(rng.float(1.0))).collect() };
    let row = kv_heads * d;
    // Un-rotated K and V of every full sequence, and the new tokens' Q.
    let total_k: usize = full.iter().sum();
    let (k_full, v_full) = (gen(total_k * row), gen(total_k * row));
    let mut q = device
        .upload(&gen(new.iter().sum::<usize>() * heads * d))
        .unwrap();

    // Contiguous path: Q and all of K rotated by the RoPE kernel.
    let starts: Vec<u32> = cached.iter().map(|&c| c as u32).collect();
    let q_pos = warpforge::kernels::prepack::positions(&new, Some(&starts)).unwrap();
    let k_pos = warpforge::kernels::prepack::positions(&full, None).unwrap();
    let mut k_rot = device.upload(&k_full).unwrap();
    let mut none: Buffer<T> = device.zeros(8).unwrap();
    let rot = |tokens, q_heads, k_heads| RopeShape {
        tokens,
        q_heads,
        k_heads,
        head_dim: d,
        rotary_dim: d,
        table_rows,
    };
    let config = (T::ROPE)().space.default_config();
    let kp = device.upload(&k_pos).unwrap();
    launch_rope(
        &device,
        &config,
        (&mut k_rot, &mut none),
        (&kp, &table),
        rot(total_k, kv_heads, 0),
    )
    .unwrap();
    let qp = device.upload(&q_pos).unwrap();
    launch_rope(
        &device,
        &config,
        (&mut q, &mut none),
        (&qp, &table),
        rot(q_pos.len(), heads, 0),
    )
    .unwrap();
    let (q_host, k_rot_host) = (
        device.download(&q).unwrap(),
        device.download(&k_rot).unwrap(),
    );

    // Paged path: the prefixes, then the new chunks, each written with RoPE fused.
    let pages_per_seq = full.iter().map(|&n| n.div_ceil(page_size)).max().unwrap();
    let pages = full.iter().map(|&n| n.div_ceil(page_size)).sum::<usize>() + 2;
    let mut order: Vec<u32> = (0..pages as u32).rev().collect();
    order.rotate_left(1);
    let mut block_table = vec![0u32; 4 * pages_per_seq];
    let mut next = 0;
    for (b, &n) in full.iter().enumerate() {
        for slot in 0..n.div_ceil(page_size) {
            block_table[b * pages_per_seq + slot] = order[next];
            next += 1;
        }
    }
    let filler = vec![T::from_f32(1000.0); pages * page_size * row];
    let (mut kc, mut vc) = (
        device.upload(&filler).unwrap(),
        device.upload(&filler).unwrap(),
    );
    let bt = device.upload(&block_table).unwrap();
    let cu_k = attention::AttnShape {
        heads,
        kv_heads,
        head_dim: d,
        causal: true,
        q_lens: new.to_vec(),
        k_lens: full.clone(),
    };
    for (lens, cache_lens) in [
        (cached.to_vec(), vec![0; 4]),
        (new.to_vec(), cached.to_vec()),
    ] {
        // This chunk's rows of the full sequences' K/V, packed.
        let (mut k_chunk, mut v_chunk, mut pos) = (Vec::new(), Vec::new(), Vec::new());
        let cu_full = cu_k.cu_seqlens_k();
        for b in 0..4 {
            let first = cu_full[b] as usize + cache_lens[b];
            k_chunk.extend_from_slice(&k_full[first * row..][..lens[b] * row]);
            v_chunk.extend_from_slice(&v_full[first * row..][..lens[b] * row]);
            pos.extend((0..lens[b]).map(|i| (cache_lens[b] + i) as u32));
        }
        let shape = PageWriteShape {
            kv_heads,
            head_dim: d,
            rotary_dim: d,
            table_rows,
            page_size,
            pages_per_seq,
            lens: lens.clone(),
            cache_lens: cache_lens.clone(),
        };
        shape.check_block_table(&block_table, pages).unwrap();
        let cu = warpforge::kernels::prepack::cu_seqlens(&lens).unwrap();
        let cl: Vec<u32> = cache_lens.iter().map(|&c| c as u32).collect();
        let (cu, cl, pb) = (
            device.upload(&cu).unwrap(),
            device.upload(&cl).unwrap(),
            device.upload(&pos).unwrap(),
        );
        let meta = PageWriteBuffers {
            cu_seqlens: &cu,
            cache_lens: &cl,
            block_table: &bt,
            positions: &pb,
            cos_sin: &table,
        };
        let (kb, vb) = (
            device.upload(&k_chunk).unwrap(),
            device.upload(&v_chunk).unwrap(),
        );
        let writer = (T::KV_PAGE_WRITE)().space.default_config();
        launch_kv_page_write(
            &device,
            &writer,
            (&kb, &vb),
            (&mut kc, &mut vc),
            &meta,
            &shape,
        )
        .unwrap();
    }
    let (kc_host, vc_host) = (device.download(&kc).unwrap(), device.download(&vc).unwrap());
    // Each cached row is the RoPE kernel's rotated K (fused = unfused, bit for bit).
    let cu_full = cu_k.cu_seqlens_k();
    for (b, &n) in full.iter().enumerate() {
        for p in 0..n {
            let page = block_table[b * pages_per_seq + p / page_size] as usize;
            let at = (page * page_size + p % page_size) * row;
            let src = (cu_full[b] as usize + p) * row;
            assert!(
                kc_host[at..at + row] == k_rot_host[src..src + row],
                "K seq {b} pos {p}"
            );
            assert!(
                vc_host[at..at + row] == v_full[src..src + row],
                "V seq {b} pos {p}"
            );
        }
    }

    // Flash attention over the pages = over the contiguous rotated K/V, bit for bit.
    let shape: AttnShape = cu_k;
    let attn_config = attention::default_config(d);
    let scale = shape.default_scale();
    let contiguous = attention::run(
        &device,
        &attn_config,
        &shape,
        (&q_host, &k_rot_host, &v_full),
        scale,
    )
    .unwrap();
    let mut paged = AttnBuffers::upload_paged(
        &device,
        &shape,
        &q_host,
        (&kc_host, &vc_host),
        &block_table,
        page_size,
        pages_per_seq,
    )
    .unwrap();
    attention::launch(&device, &attn_config, &shape, &mut paged, scale).unwrap();
    let (o, lse) = (
        device.download(&paged.o).unwrap(),
        device.download(&paged.lse).unwrap(),
    );
    assert!(
        o == contiguous.0,
        "{} page size {page_size}: O differs",
        T::SCALAR
    );
    assert!(
        lse == contiguous.1,
        "{} page size {page_size}: LSE differs",
        T::SCALAR
    );
}

#[test]
fn paged_prefill_equals_contiguous_bf16() {
    paged_prefill_matches_contiguous::<bf16>(16);
    paged_prefill_matches_contiguous::<bf16>(5);
}

#[test]
fn paged_prefill_equals_contiguous_f16() {
    paged_prefill_matches_contiguous::<f16>(8);
}

/// The bin packer through the public API: Prepacking's default capacity (the longest
/// prompt) and the waste it reports.
#[test]
fn bin_packing_report() {
    let p = best_fit_decreasing(&[12, 3, 9, 1, 5, 7, 0], None).unwrap();
    assert_eq!(p.capacity, 12);
    assert_eq!(p.bins.len(), 4);
    assert_eq!(
        (p.waste.tokens, p.waste.slots, p.waste.padding),
        (37, 48, 11)
    );
    assert!((p.waste.fraction - 11.0 / 48.0).abs() < 1e-15);
    println!(
        "bins {:?}, loads {:?}, waste {:?}",
        p.bins, p.loads, p.waste
    );
}
