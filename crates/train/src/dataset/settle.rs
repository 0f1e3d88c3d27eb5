//! Box, pixel size and origins settled from the metadata, the first stack's header and the
//! options (rules in the module docs), and the summaries made once the particles are known.

use super::{differ, DatasetError, LoadOptions, OpticsGroup, ParticleSet, Result, SourceKind};
use std::collections::HashMap;

/// The unit the origins were read in, until the final pixel size is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum OriginUnit {
    /// Å, consistent with this metadata pixel size (if known).
    Angstrom(Option<f64>),
    /// Pixels of the images.
    Pixel,
}

/// What the readers find that only loading needs: the metadata's own box and pixel size, the
/// unit of the origins, a cryoDRGN pickle's values waiting for the box, and the stacks that
/// were not found.
#[derive(Debug)]
pub(super) struct Loading {
    pub meta_apix: Option<f64>,
    pub meta_box: Option<usize>,
    pub origin_unit: OriginUnit,
    /// A CTF pickle's `(D, apix)`.
    pub pickle_d_apix: Option<(f64, f64)>,
    /// A pose pickle's translations (fractions of the box).
    pub pickle_trans: Option<Vec<[f64; 2]>>,
    /// Stacks that were not found, by the name the metadata give them.
    pub missing: Vec<String>,
    /// Where they were sought, in words.
    pub searched: String,
}

impl Default for Loading {
    fn default() -> Self {
        Loading {
            meta_apix: None,
            meta_box: None,
            origin_unit: OriginUnit::Angstrom(None),
            pickle_d_apix: None,
            pickle_trans: None,
            missing: Vec::new(),
            searched: String::new(),
        }
    }
}

impl ParticleSet {
    /// Settle box, pixel size and origins from the metadata, the first stack's header
    /// (`(nx, apix)` when opened) and the options.
    pub(super) fn finish(&mut self, opts: &LoadOptions, header: Option<(usize, Option<f64>)>) -> Result<()> {
        self.settle_box(header.map(|(nx, _)| nx))?;
        self.apix_from_ctf_pickle();
        let Some(apix) = self.settle_apix(opts, header)? else {
            // Metadata only: unknown until the stacks are opened.
            return Ok(());
        };
        self.apix = apix;
        self.origins_to_angstrom(apix);
        Ok(())
    }

    fn settle_box(&mut self, header_box: Option<usize>) -> Result<()> {
        self.box_px = match (self.loading.meta_box, header_box) {
            (Some(m), Some(h)) if m != h => {
                return Err(DatasetError::invalid(
                    &self.source,
                    format!(
                        "the metadata say the images are {m} px but {} holds {h}×{h} images",
                        self.stacks[self.particles[0].stack].display()
                    ),
                ))
            }
            (m, h) => m.or(h).unwrap_or(0),
        };
        Ok(())
    }

    /// A CTF pickle describes images of D px at its pixel size; binned images of box px
    /// have apix·D/box (cryoDRGN rescales the same way).
    fn apix_from_ctf_pickle(&mut self) {
        let Some((d, a)) = self.loading.pickle_d_apix else { return };
        let img_apix = if self.box_px > 0 && (d as usize) != self.box_px {
            let v = a * d / self.box_px as f64;
            self.warn(format!("the CTF pickle describes {d} px images at {a} Å/px; the {} px images have {v:.4} Å/px", self.box_px));
            v
        } else {
            a
        };
        match self.loading.meta_apix {
            None => {
                self.loading.meta_apix = Some(img_apix);
                if self.loading.origin_unit != OriginUnit::Pixel {
                    self.loading.origin_unit = OriginUnit::Angstrom(Some(img_apix));
                }
            }
            Some(m) if differ(m, img_apix) => {
                self.warn(format!("the CTF pickle implies {img_apix:.4} Å/px, the metadata {m} Å/px; the metadata are used"))
            }
            _ => {}
        }
    }

    /// Pixel size: override > metadata > header; `None` while unknown (metadata only).
    fn settle_apix(&mut self, opts: &LoadOptions, header: Option<(usize, Option<f64>)>) -> Result<Option<f64>> {
        let meta_apix = self.loading.meta_apix;
        let header_apix = header.and_then(|(_, a)| a).filter(|&a| a > 0.0);
        let mut apix = meta_apix;
        if let (Some(m), Some(h)) = (meta_apix, header_apix) {
            if differ(m, h) {
                self.warn(format!("the MRC header says {h} Å/px; the metadata's {m} Å/px is used"));
            }
        }
        if apix.is_none() {
            if let (Some(h), None) = (header_apix, opts.apix) {
                self.warn(format!("pixel size {h} Å/px taken from the MRC header (the metadata give none)"));
                apix = Some(h);
            }
        }
        if let Some(o) = opts.apix {
            if !(o > 0.0 && o.is_finite()) {
                return Err(DatasetError::invalid(&self.source, format!("the pixel size override {o} Å is not a positive number")));
            }
            if let Some(m) = meta_apix {
                if differ(o, m) {
                    let shifts = if self.particles.iter().any(|p| p.pose.origin_a != [0.0, 0.0]) || self.loading.pickle_trans.is_some() {
                        " (shifts keep their value in pixels: origins in Å are rescaled accordingly)"
                    } else {
                        ""
                    };
                    self.warn(format!("the pixel size {o} Å given explicitly overrides the metadata's {m} Å{shifts}"));
                }
            }
            apix = Some(o);
        }
        if apix.is_none() && header.is_some() {
            return Err(DatasetError::invalid(&self.source, "no pixel size in the metadata or the image header; give one with --apix"));
        }
        Ok(apix)
    }

    /// Origins to Å at the final pixel size `apix` (a pose pickle's translations once the box
    /// is known).
    fn origins_to_angstrom(&mut self, apix: f64) {
        if self.loading.pickle_trans.is_some() {
            if self.box_px == 0 {
                return;
            }
            let t = self.loading.pickle_trans.take().unwrap_or_default();
            let d = self.box_px as f64;
            for (part, t) in self.particles.iter_mut().zip(&t) {
                part.pose.origin_a = [t[0] * d, t[1] * d];
            }
            self.loading.origin_unit = OriginUnit::Pixel;
        }
        let factor = match self.loading.origin_unit {
            OriginUnit::Pixel => apix,
            OriginUnit::Angstrom(Some(m)) => apix / m,
            OriginUnit::Angstrom(None) => 1.0,
        };
        if factor != 1.0 {
            for part in &mut self.particles {
                part.pose.origin_a = [part.pose.origin_a[0] * factor, part.pose.origin_a[1] * factor];
            }
        }
        self.loading.origin_unit = OriginUnit::Angstrom(Some(apix));
    }

    /// Optics-group summaries: the STAR optics table's groups, or for other inputs one group
    /// per distinct (voltage, Cs, Q0) or cryoSPARC exposure group. Each holds the values of its
    /// first particle and its particle count.
    pub(super) fn build_optics_summary(&mut self) {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for p in &self.particles {
            *counts.entry(p.optics_group).or_default() += 1;
        }
        if self.optics_groups.is_empty() {
            let mut ids: Vec<u32> = Vec::new();
            for p in &self.particles {
                if !ids.contains(&p.optics_group) {
                    ids.push(p.optics_group);
                }
            }
            for id in ids {
                self.optics_groups.push(OpticsGroup {
                    id,
                    name: if self.kind == SourceKind::CryoSparc { format!("exposure group {id}") } else { format!("opticsGroup{id}") },
                    voltage_kv: 0.0,
                    cs_mm: 0.0,
                    amp_contrast: 0.0,
                    apix: self.loading.meta_apix,
                    box_px: self.loading.meta_box,
                    particles: 0,
                });
            }
        }
        for g in &mut self.optics_groups {
            g.particles = counts.get(&g.id).copied().unwrap_or(0);
            if let Some(p) = self.particles.iter().find(|p| p.optics_group == g.id) {
                g.voltage_kv = p.ctf.voltage_kv;
                g.cs_mm = p.ctf.cs_mm;
                g.amp_contrast = p.ctf.amp_contrast;
            }
        }
        // RELION 3.0 files may mix voltages within "one" group: report it.
        for g in self.optics_groups.clone() {
            let mixed = self
                .particles
                .iter()
                .filter(|p| p.optics_group == g.id)
                .any(|p| p.ctf.voltage_kv != g.voltage_kv || p.ctf.cs_mm != g.cs_mm || p.ctf.amp_contrast != g.amp_contrast);
            if mixed && self.has_ctf {
                self.warn(format!("particles of optics group {} differ in voltage, Cs or Q0; each particle keeps its own", g.id));
            }
        }
    }

    /// Warnings about half-set labels that cannot be used.
    pub(super) fn check_subsets(&mut self) {
        let with = self.particles.iter().filter(|p| p.random_subset.is_some()).count();
        if with == 0 {
            return;
        }
        if with < self.particles.len() {
            self.warn(format!("only {with} of {} particles have a half set; half sets are drawn at random", self.particles.len()));
        } else if !self.has_random_subsets() {
            self.warn("every particle is in the same half set; half sets are drawn at random");
        }
    }
}
