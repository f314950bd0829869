//! The f64 dense linear algebra GPTQ needs: a Cholesky factorization and a triangular
//! inverse, on row-major `k × k` matrices. Both run over blocks of [`BLOCK`] rows so that
//! each earlier row is read once per block (from cache) rather than once per row: at
//! `k = 4096` a row-at-a-time loop would stream the whole factor from memory 4096 times.

/// Rows processed together; their `BLOCK × k` slice (2 MiB at k = 4096) stays in cache.
const BLOCK: usize = 64;
/// Rows of a block one thread updates (each reads every earlier row once per task).
const TASK_ROWS: usize = 8;

use rayon::prelude::*;

/// A dot product (several running sums, so it vectorizes).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    super::quant::dot_f64(a, b)
}

/// Factors the symmetric positive definite `a` (row-major `k × k`, only its lower triangle
/// read) in place into the lower `L` with `a = L·Lᵀ`; the strict upper triangle is zeroed.
/// Returns the first row whose pivot is not positive (the matrix is not positive definite).
pub fn cholesky_lower(a: &mut [f64], k: usize) -> Result<(), usize> {
    assert_eq!(a.len(), k * k);
    for b in (0..k).step_by(BLOCK) {
        let end = (b + BLOCK).min(k);
        let (done, rows) = a.split_at_mut(b * k);
        let done = &*done;
        // Columns left of the block: rows `0..b` are final; one pass over them per task.
        rows[..(end - b) * k]
            .par_chunks_mut(TASK_ROWS * k)
            .for_each(|task| {
                for j in 0..b {
                    let lj = &done[j * k..j * k + j + 1];
                    for row in task.chunks_exact_mut(k) {
                        let s = row[j] - dot(&row[..j], &lj[..j]);
                        row[j] = s / lj[j];
                    }
                }
            });
        // The block's own triangle.
        for i in b..end {
            for j in b..=i {
                let (lj, li) = if j < i {
                    let (head, tail) = rows.split_at_mut((i - b) * k);
                    (&head[(j - b) * k..(j - b) * k + j + 1], &mut tail[..k])
                } else {
                    let li = &mut rows[(i - b) * k..(i - b + 1) * k];
                    let s = li[i] - dot(&li[..i], &li[..i]);
                    if s.is_nan() || s <= 0.0 {
                        return Err(i);
                    }
                    li[i] = s.sqrt();
                    continue;
                };
                let s = li[j] - dot(&li[..j], &lj[..j]);
                li[j] = s / lj[j];
            }
            rows[(i - b) * k + i + 1..(i - b + 1) * k].fill(0.0);
        }
    }
    Ok(())
}

/// The inverse of the lower triangular `l` (nonzero diagonal), lower triangular.
/// Row `i` of `X = L⁻¹` is `(eᵢ − Σ_{p<i} L[i][p]·X[p]) / L[i][i]`.
pub fn invert_lower(l: &[f64], k: usize) -> Vec<f64> {
    assert_eq!(l.len(), k * k);
    let mut x = vec![0f64; k * k];
    for b in (0..k).step_by(BLOCK) {
        let end = (b + BLOCK).min(k);
        let (done, rows) = x.split_at_mut(b * k);
        let done = &*done;
        rows[..(end - b) * k]
            .par_chunks_mut(TASK_ROWS * k)
            .enumerate()
            .for_each(|(t, task)| {
                for p in 0..b {
                    let xp = &done[p * k..p * k + p + 1];
                    for (r, row) in task.chunks_exact_mut(k).enumerate() {
                        let c = l[(b + t * TASK_ROWS + r) * k + p];
                        axpy(&mut row[..p + 1], -c, xp);
                    }
                }
            });
        for i in b..end {
            for p in b..i {
                let c = l[i * k + p];
                let (head, tail) = rows.split_at_mut((i - b) * k);
                axpy(
                    &mut tail[..p + 1],
                    -c,
                    &head[(p - b) * k..(p - b) * k + p + 1],
                );
            }
            let row = &mut rows[(i - b) * k..(i - b + 1) * k];
            row[i] += 1.0;
            let d = l[i * k + i];
            row[..=i].iter_mut().for_each(|v| *v /= d);
        }
    }
    x
}

/// `y += a·x`.
fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// The upper triangular `U` with `a⁻¹ = Uᵀ·U` for a symmetric positive definite `a`
/// (what GPTQ calls "the Cholesky of H⁻¹, upper"), without forming `a⁻¹`: with `J` the
/// reversal permutation, `J·a·J = L·Lᵀ` gives `a = V·Vᵀ` for the upper `V = J·L·J`, and
/// `a⁻¹ = V⁻ᵀ·V⁻¹`, so `U = V⁻¹ = J·L⁻¹·J`. One factorization and one triangular inverse
/// (`2k³/3` flops) instead of factor, inverse, factor again (`4k³/3`), and `a`'s buffer
/// is reused (two `k × k` matrices at the peak).
pub fn inverse_cholesky_upper(mut a: Vec<f64>, k: usize) -> Result<Vec<f64>, usize> {
    assert_eq!(a.len(), k * k);
    // (J·a·J)[i][j] = a[k−1−i][k−1−j]: the row-major buffer reversed, in place.
    a.reverse();
    cholesky_lower(&mut a, k).map_err(|row| k - 1 - row)?;
    let mut u = invert_lower(&a, k);
    drop(a);
    u.reverse();
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random symmetric positive definite matrix `M·Mᵀ + k·I`.
    fn spd(k: usize) -> Vec<f64> {
        let m: Vec<f64> = (0..k * k)
            .map(|x| ((x * 7919 % 101) as f64 - 50.0) / 50.0)
            .collect();
        let mut a = vec![0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                a[i * k + j] = (0..k).map(|p| m[i * k + p] * m[j * k + p]).sum::<f64>();
            }
            a[i * k + i] += k as f64;
        }
        a
    }

    fn matmul(a: &[f64], b: &[f64], k: usize) -> Vec<f64> {
        let mut c = vec![0f64; k * k];
        for i in 0..k {
            for j in 0..k {
                c[i * k + j] = (0..k).map(|p| a[i * k + p] * b[p * k + j]).sum();
            }
        }
        c
    }

    fn transpose(a: &[f64], k: usize) -> Vec<f64> {
        (0..k * k).map(|x| a[(x % k) * k + x / k]).collect()
    }

    fn assert_identity(m: &[f64], k: usize) {
        for i in 0..k {
            for j in 0..k {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (m[i * k + j] - want).abs() < 1e-9,
                    "[{i},{j}] = {}",
                    m[i * k + j]
                );
            }
        }
    }

    #[test]
    fn cholesky_reconstructs_across_blocks() {
        for k in [1, 5, 31, 32, 33, 70] {
            let a = spd(k);
            let mut l = a.clone();
            cholesky_lower(&mut l, k).unwrap();
            let llt = matmul(&l, &transpose(&l, k), k);
            for (x, y) in llt.iter().zip(&a) {
                assert!((x - y).abs() < 1e-9 * y.abs().max(1.0));
            }
            assert_identity(&matmul(&invert_lower(&l, k), &l, k), k);
        }
    }

    #[test]
    fn inverse_cholesky_upper_factors_the_inverse() {
        for k in [3, 33, 70] {
            let a = spd(k);
            let u = inverse_cholesky_upper(a.clone(), k).unwrap();
            for i in 0..k {
                for j in 0..i {
                    assert_eq!(u[i * k + j], 0.0);
                }
            }
            // Uᵀ·U = a⁻¹  ⇔  a·Uᵀ·U = I.
            assert_identity(&matmul(&a, &matmul(&transpose(&u, k), &u, k), k), k);
        }
    }

    #[test]
    fn indefinite_matrices_name_the_row() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        assert_eq!(cholesky_lower(&mut a, 2), Err(1));
    }
}
