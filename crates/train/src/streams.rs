//! Named random streams of a reconstruction.
//!
//! Every random choice of `reconstruct` draws from `Rng::stream(seed, tag)` with the tag of one
//! [`Stream`], so the seed and the stream's name determine each choice, a checkpoint needs no
//! generator state, and two choices never share draws. The tags are laid out as a kind in the
//! top 16 bits and an index (epoch and half) below, so no two streams can collide for any
//! epoch count (`streams_are_distinct` checks it).

use cryosplat_core::rng::Rng;

/// One named source of random numbers of a reconstruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The order in which `half` visits its images in pass `epoch` (0-based).
    VisitOrder { epoch: usize, half: usize },
    /// The random start of `half`'s model.
    InitialModel { half: usize },
    /// Density control before `half`'s pass `epoch` (0-based).
    Density { epoch: usize, half: usize },
    /// The images of `half` sampled for its data scale.
    ScaleSample { half: usize },
    /// The images of `half` sampled for its least-squares mass fit.
    MassFitSample { half: usize },
    /// The unit blob rendered for the least-squares mass fit (a shape, not data: both halves).
    MassFitBlob,
    /// The images of `half` sampled for its mass from the images' integrals.
    MassIntegralSample { half: usize },
}

impl Stream {
    /// The stream's tag: its kind in the top 16 bits, its index below.
    pub fn tag(self) -> u64 {
        let (kind, index): (u64, u64) = match self {
            Stream::VisitOrder { epoch, half } => (1, (epoch as u64) << 1 | half as u64),
            Stream::InitialModel { half } => (2, half as u64),
            Stream::Density { epoch, half } => (3, (epoch as u64) << 1 | half as u64),
            Stream::ScaleSample { half } => (4, half as u64),
            Stream::MassFitSample { half } => (5, half as u64),
            Stream::MassFitBlob => (6, 0),
            Stream::MassIntegralSample { half } => (7, half as u64),
        };
        debug_assert!(index < 1 << 48, "stream index {index} does not fit in 48 bits");
        kind << 48 | index
    }

    /// A generator for this stream of a run seeded with `seed`.
    pub fn rng(self, seed: u64) -> Rng {
        Rng::stream(seed, self.tag())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn streams_are_distinct() {
        let mut all = vec![Stream::MassFitBlob];
        for half in 0..2 {
            all.extend([Stream::ScaleSample { half }, Stream::MassFitSample { half }, Stream::MassIntegralSample { half }]);
            all.push(Stream::InitialModel { half });
            for epoch in 0..5000 {
                all.push(Stream::VisitOrder { epoch, half });
                all.push(Stream::Density { epoch, half });
            }
        }
        let tags: HashSet<u64> = all.iter().map(|s| s.tag()).collect();
        assert_eq!(tags.len(), all.len());
        // Distinct tags give distinct draws.
        let firsts: HashSet<u64> = all.iter().map(|s| s.rng(0).next_u64()).collect();
        assert_eq!(firsts.len(), all.len());
    }
}
