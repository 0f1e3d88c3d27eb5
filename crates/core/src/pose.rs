//! One particle's orientation and origin offset (RELION convention).

/// A 3×3 matrix, row-major: `m[row][col]`.
pub type Mat3 = [[f64; 3]; 3];

/// The identity matrix.
pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// A particle's pose: the rotation `A` (a volume point `r` lands at `A·r` before projection
/// along z) and the origin offset `o` in Å (`rlnOriginXAngst`, `rlnOriginYAngst`): the
/// recorded image is the centred projection moved by `-o`, so the particle centre sits at
/// pixel `D/2 - o/apix`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    pub rot: Mat3,
    pub origin_a: [f64; 2],
}

impl Default for Pose {
    fn default() -> Self {
        Pose { rot: IDENTITY, origin_a: [0.0, 0.0] }
    }
}

/// `a · b`.
pub fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
        }
    }
    m
}

/// `aᵀ`.
pub fn transpose(a: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = a[j][i];
        }
    }
    m
}

/// `a · v`.
pub fn mat_vec(a: &Mat3, v: [f64; 3]) -> [f64; 3] {
    [
        a[0][0] * v[0] + a[0][1] * v[1] + a[0][2] * v[2],
        a[1][0] * v[0] + a[1][1] * v[1] + a[1][2] * v[2],
        a[2][0] * v[0] + a[2][1] * v[1] + a[2][2] * v[2],
    ]
}
