//! Which telescope module, and which of its streams of frames.

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use crate::DataProduct;

/// A telescope module's id, as in `module_M` directory and file names and
/// in the gRPC `PanoImage.module_id` (a plain `u32` on the wire). As
/// cheap to copy and compare as the number, and printed as the number
/// (`Debug` too, so lists of ids read `[1, 3]` in logs).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(u32);

const _: () = assert!(std::mem::size_of::<ModuleId>() == std::mem::size_of::<u32>());

impl fmt::Debug for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl ModuleId {
    /// The module with this number.
    pub const fn new(id: u32) -> Self {
        ModuleId(id)
    }

    /// The number, as the wire carries it.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl From<u32> for ModuleId {
    fn from(id: u32) -> Self {
        ModuleId(id)
    }
}

impl From<ModuleId> for u32 {
    fn from(id: ModuleId) -> Self {
        id.0
    }
}

impl PartialEq<u32> for ModuleId {
    fn eq(&self, other: &u32) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for ModuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for ModuleId {
    type Err = ParseIntError;

    /// A decimal `u32`, as Rust parses one (`7`, `007`, `+7`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(ModuleId)
    }
}

/// One stream of frames: one data product of one module. Hashpipe writes
/// each into its own files; trackers and servers keep one newest frame per
/// `ModuleProduct`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleProduct {
    /// The module.
    pub module: ModuleId,
    /// What it records.
    pub dp: DataProduct,
}

impl ModuleProduct {
    /// `dp` of `module`.
    pub fn new(module: impl Into<ModuleId>, dp: DataProduct) -> Self {
        ModuleProduct {
            module: module.into(),
            dp,
        }
    }
}

impl fmt::Display for ModuleProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "module {} {}", self.module, self.dp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_id_reads_and_prints_as_its_number() {
        let id: ModuleId = "224".parse().unwrap();
        assert_eq!(id, ModuleId::new(224));
        assert_eq!(u32::from(id), 224);
        assert_eq!(id.to_string(), "224");
        for bad in ["", "-1", "x", "99999999999", "٣", "1 "] {
            assert!(bad.parse::<ModuleId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_module_product_orders_by_module_then_product() {
        let a = ModuleProduct::new(1, DataProduct::Ph256);
        let b = ModuleProduct::new(2, DataProduct::Img16);
        assert!(a < b);
        assert_eq!(a.to_string(), "module 1 ph256");
    }
}
