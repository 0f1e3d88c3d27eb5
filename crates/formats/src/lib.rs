//! File formats for cryosplat: parsing and writing only.
//!
//! Every reader returns [`FormatError`], whose message names the file, the place in it
//! (byte offset or line) and what was expected. No reader panics on malformed input and
//! no reader allocates more than the file can actually hold.
//!
//! | module | format |
//! |---|---|
//! | [`mrc`] | MRC2014 maps and image stacks (read modes 0, 1, 2, 6, 12; write float32 or float16) |
//! | [`star`] | RELION STAR files (3.0 and 3.1+ with optics groups) |
//! | [`npy`] | numpy `.npy` structured arrays, the container of cryoSPARC `.cs` files |
//! | [`cs`] | cryoSPARC `.cs` particle metadata |
//! | [`pickle`] | the subset of Python pickles that cryoDRGN pose and CTF files use |
//! | [`ply`] | PLY point clouds (Gaussian models) |
//! | [`atoms`] | atomic models from PDB and mmCIF files |
//! | [`atomic`] | atomic file writes (temporary file, then rename) |
//!
//! Conventions (units, axes, signs) are those of the project's `CONVENTIONS` contract:
//! arrays are x-fastest, lengths are in Å, angles in degrees at the file boundary.

pub mod atomic;
pub mod error;

pub use error::{FormatError, Result};
pub mod atoms;
pub mod cs;
pub mod mrc;
pub mod npy;
pub mod pickle;
pub mod ply;
pub mod star;
