//! Little-endian integer newtypes used inside fixed-layout on-disk structs.
//!
//! Each type is a byte array with alignment 1, so a struct built from them is
//! `Pod`, has no padding, and reads the same bytes on every host.

use bytemuck::{Pod, Zeroable};

macro_rules! le_int {
    ($(#[$doc:meta])* $name:ident, $int:ty, $n:literal) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Stores `v` as little-endian bytes.
            #[inline]
            pub const fn new(v: $int) -> Self {
                Self(v.to_le_bytes())
            }

            /// The value, read as little-endian.
            #[inline]
            pub const fn get(self) -> $int {
                <$int>::from_le_bytes(self.0)
            }
        }

        impl From<$int> for $name {
            #[inline]
            fn from(v: $int) -> Self {
                Self::new(v)
            }
        }

        impl From<$name> for $int {
            #[inline]
            fn from(v: $name) -> Self {
                v.get()
            }
        }

        const _: () = assert!(size_of::<$name>() == $n && align_of::<$name>() == 1);
    };
}

le_int!(
    /// A little-endian `u16` with alignment 1.
    Le16, u16, 2
);
le_int!(
    /// A little-endian `u32` with alignment 1.
    Le32, u32, 4
);
le_int!(
    /// A little-endian `u64` with alignment 1.
    Le64, u64, 8
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_little_endian() {
        assert_eq!(Le16::new(0x0102).0, [2, 1]);
        assert_eq!(Le32::new(0x0102_0304).0, [4, 3, 2, 1]);
        assert_eq!(Le64::new(0x0102_0304_0506_0708).0, [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(Le64::new(u64::MAX - 5).get(), u64::MAX - 5);
        assert_eq!(u32::from(Le32::from(7u32)), 7);
    }
}
