//! 2-D shared tiles: [`shared_array2d`], indexed `tile[row][col]`.

use super::{KernelValue, Slice};
use std::ops::{Deref, DerefMut, Index, IndexMut};

/// Block-shared memory of `rows × cols` elements, from [`shared_array2d`]: `tile[r][c]` is
/// the element `r * cols + c` of a flat [`shared_array`](super::shared_array) (row-major;
/// `#[kernel]` lowers it to exactly that flat index, so the CUDA C, the interpreter and its
/// race and bounds reports all see the flat array). Pass it to a device function as
/// `&tile` / `&mut tile`: the callee sees the flat row-major slice.
pub struct SharedArray2d<T> {
    data: Vec<T>,
    cols: usize,
}

/// Allocates a `rows × cols` tile of block-shared memory (not initialized on the GPU).
/// Both lengths must be constants over the const generics; pad `cols` (e.g. `TILE + 1`) to
/// spread a column walk over the shared-memory banks.
pub fn shared_array2d<T: KernelValue>(rows: u32, cols: u32) -> SharedArray2d<T> {
    SharedArray2d {
        data: vec![T::zero(); rows as usize * cols as usize],
        cols: cols as usize,
    }
}

impl<T> Index<u32> for SharedArray2d<T> {
    type Output = Slice<T>;
    /// Row `r` (only as `tile[r][c]` in a kernel).
    fn index(&self, r: u32) -> &Slice<T> {
        let start = r as usize * self.cols;
        Slice::from_slice(&self.data[start..start + self.cols])
    }
}

impl<T> IndexMut<u32> for SharedArray2d<T> {
    fn index_mut(&mut self, r: u32) -> &mut Slice<T> {
        let start = r as usize * self.cols;
        Slice::from_slice_mut(&mut self.data[start..start + self.cols])
    }
}

impl<T> Deref for SharedArray2d<T> {
    type Target = Slice<T>;
    fn deref(&self) -> &Slice<T> {
        Slice::from_slice(&self.data)
    }
}

impl<T> DerefMut for SharedArray2d<T> {
    fn deref_mut(&mut self) -> &mut Slice<T> {
        Slice::from_slice_mut(&mut self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::{shared_array2d, Slice};

    #[test]
    fn rows_and_columns_are_row_major() {
        let mut tile = shared_array2d::<u32>(3, 5);
        tile[2u32][4u32] = 7;
        tile[1u32][0u32] = 3;
        // The flat view, as a device function taking `&tile` sees it.
        let flat: &Slice<u32> = &tile;
        assert_eq!(flat.len(), 15);
        assert_eq!(flat[14u32], 7);
        assert_eq!(flat[5u32], 3);
        assert_eq!(tile[2u32][4u32], 7);
    }
}
