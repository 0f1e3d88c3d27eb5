//! Core math for cryosplat. No IO: every function takes and returns plain arrays and structs.
//!
//! # Conventions
//!
//! These follow the project's physics contract (RELION's conventions), and every module
//! that touches geometry or Fourier space restates the part it relies on.
//!
//! * **Arrays** are x-fastest: a `D×D` image is a `Vec` indexed `[y*D + x]`, a `D³` volume
//!   `[(z*D + y)*D + x]`.
//! * **Grids are FFT-aligned**: along a `D`-sample axis the origin is at index `D/2` (integer
//!   division). Sample `(i, j)` (row, column) sits at `x = (j - D/2)·apix`, `y = (i - D/2)·apix`.
//!   Samples are point values, never pixel-area integrals.
//! * **Frequencies**: column `j` of a centred spectrum has `kx = (j - D/2)/(D·apix)` in 1/Å.
//!   Nyquist is `1/(2·apix)`. Fourier shells are `n = round(|k|·D·apix)`.
//! * **Centred transforms**: `F = fftshift(fft(ifftshift(x)))`; the forward transform is
//!   unnormalised and the inverse divides by the number of samples.
//! * **Poses**: `A = Rz(psi)·Ry(tilt)·Rz(rot)` from RELION's Euler angles; a volume point `r`
//!   lands at `A·r` and the image is `∫ V(Aᵀ·(x, y, z)) dz`, then moved by `-o` where `o` is the
//!   origin offset in Å (`rlnOriginXAngst`, `rlnOriginYAngst`).
//! * **Symmetry**: a point group's operators `R_k` ([`symmetry`], RELION's names and
//!   orientations: `Cn` about z, the two-fold of `Dn` along x) act on map coordinates about the
//!   box centre `D/2`: a symmetric map obeys `V(R_k·r) = V(r)`, copies of an atomic model sit
//!   at `R_k·r`, and a particle of pose `A` is equally seen under every pose `A·R_k` (RELION's
//!   symmetry expansion). The set of operators equals the set of their transposes.
//! * **CTF**: RELION's formula and sign, `CTF(0) = +Q0`; see [`ctf`].
//! * **Map scale**: a map's values are such that summing the voxels of a column along z gives
//!   the projection image's pixel value (the discrete line integral in units of voxels), as
//!   RELION's projector does. Gaussian models are voxelised to the same scale, so a Gaussian map
//!   and a backprojected map of the same images are directly comparable.
//! * **Box units**: the Gaussian model lives in box units, the box spanning `[-0.5, 0.5]` along
//!   each axis (one pixel is `1/D`); see [`gaussian`]. Conversion to Å is `× D·apix`.

pub mod backproject;
pub mod crossval;
pub mod ctf;
pub mod fourier;
pub mod fsc;
pub mod gaussian;
pub mod locres;
pub mod mask;
pub mod pose;
pub mod postprocess;
pub mod potential;
pub mod projector;
pub mod reference;
pub mod render;
pub mod rng;
pub mod rotation;
pub mod symmetry;
pub mod views;
pub mod voxel;
