//! Atomic models → electron scattering potential as a sum of isotropic 3D Gaussians.
//!
//! # Physics and units
//!
//! Each element's elastic electron scattering factor is the five-Gaussian fit of Peng, Ren,
//! Dudarev & Whelan (1996), *Acta Cryst.* A52, 257–276, for neutral atoms and
//! `0 ≤ s ≤ 2 Å⁻¹` (their Table 1, reprinted as International Tables for Crystallography
//! Vol. C, Table 4.3.2.2):
//!
//! `f_e(s) = Σᵢ aᵢ exp(−bᵢ s²)`, `s = sin θ/λ = |k|/2` (Å⁻¹), `aᵢ` in Å, `bᵢ` in Å².
//!
//! An atom with isotropic displacement factor `B` (Å², the PDB B-factor) scatters as
//! `f_e(s)·exp(−B s²)`, so in real space each term is a normalised 3D Gaussian of variance
//! `(bᵢ + B)/(8π²)` Å² per axis and weight `aᵢ` (the inverse Fourier transform of
//! `exp(−(bᵢ+B)|k|²/4)` with the `e^(−2πi k·r)` convention). The electrostatic potential
//! in volts is
//!
//! `V(r) = K · Σ_atoms occ · Σᵢ aᵢ · N(r; r_atom, (bᵢ + B)/(8π²)·I)`, with
//! `K = h²/(2π m₀ e) =` [`POTENTIAL_PREFACTOR_V_A2`] `= 47.8766 V·Å²`,
//!
//! so each Gaussian's **mass** (its integral, [`GaussianA::mass`]) is `K·aᵢ·occ` in **V·Å³**.
//! Projections of this mixture are in V·Å (projected potential) and maps voxelised with
//! [`crate::voxel`] (`V·apix`) are in V·Å too. Relativistic mass correction is not applied
//! (it is a per-voltage constant factor `γ = 1 + eU/(m₀c²)` on the interaction strength,
//! which the simulator's SNR definition absorbs).
//!
//! # Elements
//!
//! The table covers H to Kr and the heavier elements most often met in deposited models
//! (Sr, Mo, Ag, Cd, I, Cs, Ba, Gd, W, Pt, Au, Hg, Pb, U). Ions (Na⁺, Mg²⁺, Cl⁻, K⁺, Ca²⁺,
//! Fe²⁺/³⁺, Zn²⁺, …) use the neutral atom's fit: the difference is confined to very low
//! resolution (`s ≲ 0.1 Å⁻¹`). Element symbols are matched case-insensitively after dropping
//! charge suffixes (`FE2+`, `Cl-`); an unknown symbol falls back to carbon and is reported
//! in [`AtomicPotential::unknown_elements`] so that the caller can warn.
//!
//! # Centring
//!
//! The Gaussians are returned relative to a centre chosen by [`Centering`]: by default the
//! centroid of the potential (atom positions weighted by `occ·f_e(0)`, i.e. by each atom's
//! Gaussian mass), which is the map's centre of mass; alternatively the centre of the atoms'
//! bounding box, or no shift.

#![allow(clippy::needless_range_loop)] // index loops over x, y, z

use crate::gaussian::GaussianA;

/// `h²/(2π m₀ e)` in V·Å²: converts electron scattering factors (Å) to potential (V·Å³ per
/// unit of the normalised Gaussian). CODATA 2018 constants.
pub const POTENTIAL_PREFACTOR_V_A2: f64 = 47.876_6;

/// One element's five-Gaussian fit: `f_e(s) = Σ aᵢ exp(−bᵢ s²)`, `aᵢ` in Å, `bᵢ` in Å².
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ElementFit {
    pub symbol: &'static str,
    /// Atomic number.
    pub z: u32,
    pub a: [f64; 5],
    pub b: [f64; 5],
}

impl ElementFit {
    /// The scattering factor `f_e(s)` in Å at `s = sin θ/λ` (Å⁻¹).
    pub fn eval(&self, s: f64) -> f64 {
        let s2 = s * s;
        self.a.iter().zip(&self.b).map(|(a, b)| a * (-b * s2).exp()).sum()
    }
}

/// Peng et al. (1996), Table 1 (neutral atoms, `0 ≤ s ≤ 2 Å⁻¹`).
pub static ELEMENT_FITS: &[ElementFit] = &[
    ElementFit { symbol: "H", z: 1, a: [0.0349, 0.1201, 0.1970, 0.0573, 0.1195], b: [0.5347, 3.5867, 12.3471, 18.9525, 38.6269] },
    ElementFit { symbol: "He", z: 2, a: [0.0317, 0.0838, 0.1526, 0.1334, 0.0164], b: [0.2507, 1.4751, 4.4938, 12.6646, 31.1653] },
    ElementFit { symbol: "Li", z: 3, a: [0.0750, 0.2249, 0.5548, 1.4954, 0.9354], b: [0.3864, 2.9383, 15.3829, 53.5545, 138.7337] },
    ElementFit { symbol: "Be", z: 4, a: [0.0780, 0.2210, 0.6740, 1.3867, 0.6925], b: [0.3131, 2.2381, 10.1517, 30.9061, 78.3273] },
    ElementFit { symbol: "B", z: 5, a: [0.0909, 0.2551, 0.7738, 1.2136, 0.4606], b: [0.2995, 2.1155, 8.3816, 24.1292, 63.1314] },
    ElementFit { symbol: "C", z: 6, a: [0.0893, 0.2563, 0.7570, 1.0487, 0.3575], b: [0.2465, 1.7100, 6.4094, 18.6113, 50.2523] },
    ElementFit { symbol: "N", z: 7, a: [0.1022, 0.3219, 0.7982, 0.8197, 0.1715], b: [0.2451, 1.7481, 6.1925, 17.3894, 48.1431] },
    ElementFit { symbol: "O", z: 8, a: [0.0974, 0.2921, 0.6910, 0.6990, 0.2039], b: [0.2067, 1.3815, 4.6943, 12.7105, 32.4726] },
    ElementFit { symbol: "F", z: 9, a: [0.1083, 0.3175, 0.6487, 0.5846, 0.1421], b: [0.2057, 1.3439, 4.2788, 11.3932, 28.7881] },
    ElementFit { symbol: "Ne", z: 10, a: [0.1269, 0.3535, 0.5582, 0.4674, 0.1460], b: [0.2200, 1.3779, 4.0203, 9.4934, 23.1278] },
    ElementFit { symbol: "Na", z: 11, a: [0.2142, 0.6853, 0.7692, 1.6589, 1.4482], b: [0.3334, 2.3446, 10.0830, 48.3037, 138.2700] },
    ElementFit { symbol: "Mg", z: 12, a: [0.2314, 0.6866, 0.9677, 2.1882, 1.1339], b: [0.3278, 2.2720, 10.9241, 39.2898, 101.9748] },
    ElementFit { symbol: "Al", z: 13, a: [0.2390, 0.6573, 1.2011, 2.5586, 1.2312], b: [0.3138, 2.1063, 10.4163, 34.4552, 98.5344] },
    ElementFit { symbol: "Si", z: 14, a: [0.2519, 0.6372, 1.3795, 2.5082, 1.0500], b: [0.3075, 2.0174, 9.6746, 29.3744, 80.4732] },
    ElementFit { symbol: "P", z: 15, a: [0.2548, 0.6106, 1.4541, 2.3204, 0.8477], b: [0.2908, 1.8740, 8.5176, 24.3434, 63.2996] },
    ElementFit { symbol: "S", z: 16, a: [0.2497, 0.5628, 1.3899, 2.1865, 0.7715], b: [0.2681, 1.6711, 7.0267, 19.5377, 50.3888] },
    ElementFit { symbol: "Cl", z: 17, a: [0.2443, 0.5397, 1.3919, 2.0197, 0.6621], b: [0.2468, 1.5242, 6.1537, 16.6687, 42.3086] },
    ElementFit { symbol: "Ar", z: 18, a: [0.2385, 0.5017, 1.3428, 1.8899, 0.6079], b: [0.2289, 1.3694, 5.2561, 14.0928, 35.5361] },
    ElementFit { symbol: "K", z: 19, a: [0.4115, 1.4031, 2.2784, 2.6742, 2.2162], b: [0.3703, 3.3874, 13.1029, 68.9592, 194.4329] },
    ElementFit { symbol: "Ca", z: 20, a: [0.4054, 1.3880, 2.1602, 3.7532, 2.2063], b: [0.3499, 3.0991, 11.9608, 53.9353, 142.3892] },
    ElementFit { symbol: "Sc", z: 21, a: [0.3787, 1.2181, 2.0594, 3.2618, 2.3870], b: [0.3133, 2.5856, 9.5813, 41.7688, 116.7282] },
    ElementFit { symbol: "Ti", z: 22, a: [0.3825, 1.2598, 2.0008, 3.0617, 2.0694], b: [0.3040, 2.4863, 9.2783, 39.0751, 109.4583] },
    ElementFit { symbol: "V", z: 23, a: [0.3876, 1.2750, 1.9109, 2.8314, 1.8979], b: [0.2967, 2.3780, 8.7981, 35.9528, 101.7201] },
    ElementFit { symbol: "Cr", z: 24, a: [0.4046, 1.3696, 1.8941, 2.0800, 1.2196], b: [0.2986, 2.3958, 9.1406, 37.4701, 113.7121] },
    ElementFit { symbol: "Mn", z: 25, a: [0.3796, 1.2094, 1.7815, 2.5420, 1.5937], b: [0.2699, 2.0455, 7.4726, 31.0604, 91.5622] },
    ElementFit { symbol: "Fe", z: 26, a: [0.3946, 1.2725, 1.7031, 2.3140, 1.4795], b: [0.2717, 2.0443, 7.6007, 29.9714, 86.2265] },
    ElementFit { symbol: "Co", z: 27, a: [0.4118, 1.3161, 1.6493, 2.1930, 1.2830], b: [0.2742, 2.0372, 7.7205, 29.9680, 84.9383] },
    ElementFit { symbol: "Ni", z: 28, a: [0.3860, 1.1765, 1.5451, 2.0730, 1.3814], b: [0.2478, 1.7660, 6.3107, 25.2204, 74.3146] },
    ElementFit { symbol: "Cu", z: 29, a: [0.4314, 1.3208, 1.5236, 1.4671, 0.8562], b: [0.2694, 1.9223, 7.3474, 28.9892, 90.6246] },
    ElementFit { symbol: "Zn", z: 30, a: [0.4288, 1.2646, 1.4472, 1.8294, 1.0934], b: [0.2593, 1.7998, 6.7500, 25.5860, 73.5284] },
    ElementFit { symbol: "Ga", z: 31, a: [0.4818, 1.4032, 1.6561, 2.4605, 1.1054], b: [0.2825, 1.9785, 8.7546, 32.5238, 98.5523] },
    ElementFit { symbol: "Ge", z: 32, a: [0.4655, 1.3014, 1.6088, 2.6998, 1.3003], b: [0.2647, 1.7926, 7.6071, 26.5541, 77.5238] },
    ElementFit { symbol: "As", z: 33, a: [0.4517, 1.2229, 1.5852, 2.7958, 1.2638], b: [0.2493, 1.6436, 6.8154, 22.3681, 62.0390] },
    ElementFit { symbol: "Se", z: 34, a: [0.4477, 1.1678, 1.5843, 2.8087, 1.1956], b: [0.2405, 1.5442, 6.3231, 19.4610, 52.0233] },
    ElementFit { symbol: "Br", z: 35, a: [0.4798, 1.1948, 1.8695, 2.6953, 0.8203], b: [0.2504, 1.5963, 6.9653, 19.8492, 50.3233] },
    ElementFit { symbol: "Kr", z: 36, a: [0.4546, 1.0993, 1.7696, 2.7068, 0.8672], b: [0.2309, 1.4279, 5.9449, 16.6752, 42.2243] },
    ElementFit { symbol: "Sr", z: 38, a: [0.6703, 1.4926, 3.3368, 4.4600, 3.1501], b: [0.3190, 2.2287, 10.3504, 52.3291, 151.2216] },
    ElementFit { symbol: "Mo", z: 42, a: [0.6773, 1.4798, 3.1788, 3.0824, 1.8384], b: [0.2920, 2.0606, 8.1129, 30.5336, 100.0658] },
    ElementFit { symbol: "Ag", z: 47, a: [0.6377, 1.3790, 2.8294, 2.3631, 1.4553], b: [0.2466, 1.6974, 5.7656, 20.0943, 76.7372] },
    ElementFit { symbol: "Cd", z: 48, a: [0.6364, 1.4247, 2.7802, 2.5973, 1.7886], b: [0.2407, 1.6823, 5.6588, 20.7219, 69.1109] },
    ElementFit { symbol: "I", z: 53, a: [0.7047, 1.9484, 2.5940, 4.1526, 1.5057], b: [0.2455, 1.8638, 6.7639, 21.8007, 56.4395] },
    ElementFit { symbol: "Cs", z: 55, a: [1.2704, 3.8018, 5.6618, 0.9205, 4.8105], b: [0.4356, 4.2058, 23.4342, 136.7783, 171.7561] },
    ElementFit { symbol: "Ba", z: 56, a: [0.9049, 2.6076, 4.8498, 5.1603, 4.7388], b: [0.3066, 2.4363, 12.1821, 54.6135, 161.9978] },
    ElementFit { symbol: "Gd", z: 64, a: [0.9673, 2.4702, 4.1148, 4.4972, 3.2099], b: [0.2909, 2.1014, 9.7067, 43.4270, 125.9474] },
    ElementFit { symbol: "W", z: 74, a: [0.9853, 2.1167, 3.3570, 3.7981, 2.2798], b: [0.2569, 1.6745, 7.0098, 26.9234, 81.3910] },
    ElementFit { symbol: "Pt", z: 78, a: [0.9148, 1.8096, 3.2134, 3.2953, 1.5754], b: [0.2263, 1.3813, 5.3243, 17.5987, 60.0171] },
    ElementFit { symbol: "Au", z: 79, a: [0.9674, 1.8916, 3.3993, 3.0524, 1.2607], b: [0.2358, 1.4712, 5.6758, 18.7119, 61.5286] },
    ElementFit { symbol: "Hg", z: 80, a: [1.0033, 1.9469, 3.4396, 3.1548, 1.4180], b: [0.2413, 1.5298, 5.8009, 19.4520, 60.5753] },
    ElementFit { symbol: "Pb", z: 82, a: [1.0891, 2.1867, 3.6160, 3.8031, 1.8994], b: [0.2552, 1.7174, 6.5131, 23.9170, 74.7039] },
    ElementFit { symbol: "U", z: 92, a: [1.3382, 3.2043, 5.4558, 5.4839, 3.6342], b: [0.2838, 2.2452, 10.2519, 41.7251, 124.9023] },
];

/// The fit of an element symbol, case-insensitive, ignoring surrounding blanks and a trailing
/// charge (`"FE"`, `"Fe2+"`, `"cl-"`). `None` if the element is not in the table.
pub fn element_fit(symbol: &str) -> Option<&'static ElementFit> {
    let s = symbol.trim().trim_end_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
    if s.is_empty() || s.len() > 2 {
        return None;
    }
    ELEMENT_FITS.iter().find(|e| e.symbol.eq_ignore_ascii_case(s))
}

/// One atom of an atomic model: the type the PDB and mmCIF readers return, used here as is.
pub use cryosplat_formats::atoms::Atom;

/// Where the potential's origin is put.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Centering {
    /// The potential's centroid (atoms weighted by their Gaussian mass): the map's centre of
    /// mass lands on the box centre.
    #[default]
    CentreOfMass,
    /// The centre of the atoms' axis-aligned bounding box.
    BoundingBox,
    /// Keep the model's coordinates.
    None,
}

/// Options for [`atomic_potential`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PotentialOptions {
    /// B-factor added to every atom's own (Å²).
    pub extra_b_a2: f64,
    /// Replace every atom's B-factor by this value (Å²) before adding `extra_b_a2`.
    pub set_b_a2: Option<f64>,
    /// Origin of the output coordinates.
    pub centering: Centering,
}

impl Default for PotentialOptions {
    fn default() -> Self {
        PotentialOptions { extra_b_a2: 0.0, set_b_a2: None, centering: Centering::CentreOfMass }
    }
}

/// An atomic model's potential as isotropic Gaussians in Å.
#[derive(Clone, Debug, PartialEq)]
pub struct AtomicPotential {
    /// Five Gaussians per atom (atoms with zero occupancy are skipped), centred (see
    /// [`Centering`]); masses in V·Å³.
    pub gaussians: Vec<GaussianA>,
    /// The model coordinate (Å) that was moved to the origin.
    pub centre_a: [f64; 3],
    /// Symbols not in the table, with their counts; those atoms were modelled as carbon.
    pub unknown_elements: Vec<(String, usize)>,
    /// The largest distance of an atom centre from the origin after centring (Å): the radius
    /// of the smallest origin-centred sphere holding every atom centre.
    pub radius_a: f64,
}

/// An atom that cannot be modelled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("atom {index} ({element}): {problem}")]
pub struct PotentialError {
    /// 1-based index of the atom in the input.
    pub index: usize,
    pub element: String,
    pub problem: String,
}

fn bad(i: usize, at: &Atom, problem: String) -> PotentialError {
    PotentialError { index: i + 1, element: at.element.clone(), problem }
}

/// Build the potential of `atoms` (see the module docs). An atom with a non-finite position,
/// B-factor or occupancy, a negative occupancy, or a total B below −0.2 Å² (which would make a
/// variance negative) is an error naming the atom.
pub fn atomic_potential(atoms: &[Atom], opts: &PotentialOptions) -> Result<AtomicPotential, PotentialError> {
    let carbon = element_fit("C").expect("carbon is in the table");
    let mut unknown: Vec<(String, usize)> = Vec::new();
    let mut fits = Vec::with_capacity(atoms.len());
    for (i, at) in atoms.iter().enumerate() {
        if !at.pos_a.iter().all(|v| v.is_finite()) || !at.b_factor_a2.is_finite() || !at.occupancy.is_finite() {
            return Err(bad(i, at, "non-finite position, B-factor or occupancy".into()));
        }
        if at.occupancy < 0.0 {
            return Err(bad(i, at, format!("negative occupancy {}", at.occupancy)));
        }
        let b = opts.set_b_a2.unwrap_or(at.b_factor_a2) + opts.extra_b_a2;
        // bᵢ ≥ 0.2 Å² for every element, so B down to −0.2 Å² still gives positive variances.
        if b < -0.2 {
            return Err(bad(i, at, format!("total B-factor {b} Å² is negative")));
        }
        let fit = match element_fit(&at.element) {
            Some(f) => f,
            None => {
                let key = at.element.trim().to_string();
                match unknown.iter_mut().find(|(k, _)| *k == key) {
                    Some(e) => e.1 += 1,
                    None => unknown.push((key, 1)),
                }
                carbon
            }
        };
        fits.push((fit, b));
    }
    let centre_a = match opts.centering {
        Centering::None => [0.0; 3],
        Centering::BoundingBox => {
            let mut lo = [f64::INFINITY; 3];
            let mut hi = [f64::NEG_INFINITY; 3];
            for at in atoms.iter().filter(|a| a.occupancy > 0.0) {
                for k in 0..3 {
                    lo[k] = lo[k].min(at.pos_a[k]);
                    hi[k] = hi[k].max(at.pos_a[k]);
                }
            }
            if lo[0].is_finite() {
                [0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]), 0.5 * (lo[2] + hi[2])]
            } else {
                [0.0; 3]
            }
        }
        Centering::CentreOfMass => {
            let mut acc = [0.0; 3];
            let mut w = 0.0;
            for (at, (fit, _)) in atoms.iter().zip(&fits) {
                let m = at.occupancy * fit.a.iter().sum::<f64>();
                for k in 0..3 {
                    acc[k] += m * at.pos_a[k];
                }
                w += m;
            }
            if w > 0.0 {
                [acc[0] / w, acc[1] / w, acc[2] / w]
            } else {
                [0.0; 3]
            }
        }
    };
    let eight_pi2 = 8.0 * std::f64::consts::PI * std::f64::consts::PI;
    let mut gaussians = Vec::with_capacity(5 * atoms.len());
    let mut radius2 = 0.0f64;
    for (at, (fit, b)) in atoms.iter().zip(&fits) {
        if at.occupancy == 0.0 {
            continue;
        }
        let mean_a = [at.pos_a[0] - centre_a[0], at.pos_a[1] - centre_a[1], at.pos_a[2] - centre_a[2]];
        radius2 = radius2.max(mean_a.iter().map(|v| v * v).sum());
        for i in 0..5 {
            let var = (fit.b[i] + b) / eight_pi2;
            gaussians.push(GaussianA::isotropic(mean_a, var.sqrt(), POTENTIAL_PREFACTOR_V_A2 * fit.a[i] * at.occupancy));
        }
    }
    Ok(AtomicPotential { gaussians, centre_a, unknown_elements: unknown, radius_a: radius2.sqrt() })
}
