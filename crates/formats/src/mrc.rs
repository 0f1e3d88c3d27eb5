//! MRC2014 maps and image stacks.
//!
//! # Reading
//!
//! [`MrcFile::open`] memory-maps the file and parses its 1024-byte header; single images of a
//! stack are decoded on demand by [`MrcFile::read_image`], which touches only that image's
//! bytes, so a stack of any size can be used without loading it. Modes 0 (int8), 1 (int16),
//! 2 (float32), 6 (uint16) and 12 (float16) are read, in either byte order. Data start at
//! byte `1024 + NSYMBT` (extended headers are skipped).
//!
//! Reading is lenient about the quirks found in real files, and reports each one as a
//! warning string in [`MrcHeader::warnings`] (the parser logs nothing; the caller decides how to
//! show them): machine stamp 0 (read as little-endian) or unknown (the byte order in which MODE
//! is valid), a missing `MAP ` tag, NVERSION other than 20140/20141, `cella = 0` or `MX = 0`
//! (pixel size unknown: [`MrcHeader::apix`] is `None`, take it from metadata), a pixel size of
//! exactly 1 Å in a header without the `MAP ` tag or NVERSION 20140/20141 (`cella = N`, a
//! common placeholder there; compliant headers are taken at their word), different x and y
//! pixel sizes, unset
//! statistics (DMAX < DMIN, DMEAN below both, or RMS < 0), an axis order other than 1, 2, 3,
//! and a trailer after the data shorter than one image (see below).
//!
//! Reading is strict about what would make the data wrong: an unknown mode, non-positive
//! dimensions, a negative NSYMBT or one reaching past the end of the file, or a data size that
//! disagrees with the header are errors naming the file and the byte offset of the offending
//! field. The size the header describes (NX·NY·NZ samples of MODE after `1024 + NSYMBT` bytes)
//! is computed without overflow and checked against the file length before anything is
//! allocated; a mismatch names the MODE, NX·NY·NZ, the expected and the actual byte count.
//!
//! Data size: fewer bytes than the header describes is an error (a truncated file). More bytes
//! is an error too when the excess is at least one image (NX·NY samples of MODE): that is what
//! a wrong MODE leaves (float32 data whose header says mode 6 hold twice the bytes described;
//! any change of MODE to a smaller sample leaves at least one image's worth) or an NZ that
//! undercounts the images, and either would be read as garbage or silently cut short. The one
//! lenient case is a trailer shorter than one image, which no wrong MODE or NZ can produce: it is
//! accepted with a warning, as elsewhere (RELION reads exactly the bytes the header describes and
//! never compares them with the file length; the Python `mrcfile` package warns that the file is
//! larger than expected and reads it). [`parse_header`] and [`decode_image`] work on plain bytes (as
//! the fuzz target uses them); [`MrcFile`] maps the file and uses the same code.
//!
//! Pixel values: [`MrcFile::read_image`] and [`MrcFile::read_all`] refuse data holding NaN or
//! infinite values, giving the file, the image and the count ([`MrcFile::read_image_unchecked`]
//! does not check; [`count_non_finite`] counts). [`MrcFile::stats`] streams min, max, mean,
//! standard deviation and the non-finite count over a whole file, one image at a time.
//!
//! # Arrays
//!
//! Data are x-fastest: pixel `(x, y)` of image `z` is element `(z·NY + y)·NX + x`. The MRC
//! axis-order fields (MAPC/MAPR/MAPS) are assumed to be 1, 2, 3; other orders are reported as a
//! warning and not permuted.
//!
//! # Writing
//!
//! [`write_volume`] and [`write_stack`] (and the streaming [`StackWriter`]) write MRC2014
//! files that `mrcfile.validate` accepts: NVERSION 20140, the `MAP ` tag, machine stamp
//! `44 44 00 00` (little-endian), true DMIN/DMAX/DMEAN/RMS (RMS is the standard deviation from
//! the mean), `cella = N·apix` per axis, MAPC/MAPR/MAPS = 1, 2, 3. A volume has ISPG = 1 and
//! MZ = NZ; an image stack has ISPG = 0, MZ = 1 and `cella.z = apix`. Data are float32
//! (mode 2) unless float16 (mode 12) is requested; for float16 the statistics describe the
//! rounded values stored. ORIGIN is 0 unless [`WriteOptions::origin_a`] says otherwise. Values
//! that are NaN or infinite are refused. Every write goes to a temporary file that is renamed
//! into place only when complete; [`StackWriter`] writes images one by one and completes the
//! header (count and statistics) when finished.
//!
//! (`mrcfile.validate` 1.5 recomputes the RMS of float16 data in float16 arithmetic, which
//! overflows once a sum passes 65504: it then reports "inaccurate statistics" for any large
//! float16 file, including a 64³ map of unit-variance noise that mrcfile itself wrote. Float32
//! files pass.)

use crate::atomic::write_atomic;
use crate::error::{FormatError, Result};
use half::f16;
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Size of the fixed MRC header in bytes.
pub const HEADER_BYTES: usize = 1024;

/// Data modes this crate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Mode 0: signed 8-bit integers.
    Int8,
    /// Mode 1: signed 16-bit integers.
    Int16,
    /// Mode 2: 32-bit floats.
    Float32,
    /// Mode 6: unsigned 16-bit integers.
    Uint16,
    /// Mode 12: 16-bit floats (IEEE half precision).
    Float16,
}

impl Mode {
    /// The mode from its MRC number.
    pub fn from_number(n: i32) -> Option<Mode> {
        match n {
            0 => Some(Mode::Int8),
            1 => Some(Mode::Int16),
            2 => Some(Mode::Float32),
            6 => Some(Mode::Uint16),
            12 => Some(Mode::Float16),
            _ => None,
        }
    }
    /// The MRC mode number.
    pub fn number(self) -> i32 {
        match self {
            Mode::Int8 => 0,
            Mode::Int16 => 1,
            Mode::Float32 => 2,
            Mode::Uint16 => 6,
            Mode::Float16 => 12,
        }
    }
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            Mode::Int8 => 1,
            Mode::Int16 | Mode::Uint16 | Mode::Float16 => 2,
            Mode::Float32 => 4,
        }
    }
}

/// The parsed header of an MRC file.
#[derive(Clone, Debug, PartialEq)]
pub struct MrcHeader {
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
    pub mode: Mode,
    /// Sampling along each axis (MX, MY, MZ).
    pub mxyz: [i32; 3],
    /// Cell dimensions in Å (CELLA).
    pub cella: [f32; 3],
    /// Pixel size in Å from `cella.x / MX`, or `None` when the header does not say.
    pub apix: Option<f64>,
    /// Space group (0 for image stacks, 1 for volumes).
    pub ispg: i32,
    /// Bytes of extended header.
    pub nsymbt: usize,
    /// Byte offset of the first sample.
    pub data_offset: u64,
    /// ORIGIN fields (Å).
    pub origin: [f32; 3],
    /// DMIN, DMAX, DMEAN, RMS as stored.
    pub stored_stats: [f32; 4],
    /// NVERSION as stored.
    pub nversion: i32,
    pub big_endian: bool,
    /// The text labels (trimmed).
    pub labels: Vec<String>,
    /// Every quirk found in the header, in words a user understands.
    pub warnings: Vec<String>,
}

impl MrcHeader {
    /// Samples per image (`nx·ny`).
    pub fn image_len(&self) -> usize {
        self.nx * self.ny
    }
    /// Bytes of data the header describes (checked against the file length by [`parse_header`]).
    pub fn data_bytes(&self) -> u64 {
        self.nx as u64 * self.ny as u64 * self.nz as u64 * self.mode.bytes() as u64
    }
}

fn word(bytes: &[u8], index: usize, big: bool) -> [u8; 4] {
    let o = index * 4;
    let mut w = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
    if big {
        w.reverse();
    }
    w
}

fn int(bytes: &[u8], index: usize, big: bool) -> i32 {
    i32::from_le_bytes(word(bytes, index, big))
}

fn float(bytes: &[u8], index: usize, big: bool) -> f32 {
    f32::from_le_bytes(word(bytes, index, big))
}

/// Parse the header of an MRC file whose whole content is `bytes` (used to check the claimed
/// data size against the file length). `path` is only used in messages.
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<MrcHeader> {
    if bytes.len() < HEADER_BYTES {
        return Err(FormatError::binary(path, 0, format!("file has {} bytes, fewer than the 1024-byte MRC header", bytes.len())));
    }
    let mut warnings = Vec::new();
    let stamp = [bytes[212], bytes[213]];
    let big = match stamp {
        [0x44, 0x44] | [0x44, 0x41] => false,
        [0x11, 0x11] => true,
        [0, 0] => {
            warnings.push("machine stamp is 0; reading as little-endian".to_string());
            false
        }
        _ => {
            // Unknown stamp: pick the byte order in which the mode is valid.
            let le = Mode::from_number(int(bytes, 3, false)).is_some();
            let big = !le && Mode::from_number(int(bytes, 3, true)).is_some();
            warnings.push(format!(
                "unrecognised machine stamp {:02x} {:02x}; reading as {}-endian",
                stamp[0],
                stamp[1],
                if big { "big" } else { "little" }
            ));
            big
        }
    };
    let dims = [int(bytes, 0, big), int(bytes, 1, big), int(bytes, 2, big)];
    for (k, &n) in dims.iter().enumerate() {
        if n <= 0 {
            return Err(FormatError::binary(
                path,
                (k * 4) as u64,
                format!("N{} is {n}; expected a positive number of samples", ["X", "Y", "Z"][k]),
            ));
        }
    }
    let mode_number = int(bytes, 3, big);
    let mode = Mode::from_number(mode_number)
        .ok_or_else(|| FormatError::binary(path, 12, format!("MODE is {mode_number}; expected 0, 1, 2, 6 or 12")))?;
    let mxyz = [int(bytes, 7, big), int(bytes, 8, big), int(bytes, 9, big)];
    let cella = [float(bytes, 10, big), float(bytes, 11, big), float(bytes, 12, big)];
    let axes = [int(bytes, 16, big), int(bytes, 17, big), int(bytes, 18, big)];
    if axes != [1, 2, 3] && axes != [0, 0, 0] {
        warnings.push(format!("axis order MAPC/MAPR/MAPS is {axes:?}; data are read as x-fastest without permutation"));
    }
    let stored_stats = [float(bytes, 19, big), float(bytes, 20, big), float(bytes, 21, big), float(bytes, 54, big)];
    let ispg = int(bytes, 22, big);
    let nsymbt_raw = int(bytes, 23, big);
    if nsymbt_raw < 0 {
        return Err(FormatError::binary(path, 92, format!("NSYMBT is {nsymbt_raw}; expected 0 or a positive byte count")));
    }
    let nsymbt = nsymbt_raw as usize;
    let nversion = int(bytes, 27, big);
    let origin = [float(bytes, 49, big), float(bytes, 50, big), float(bytes, 51, big)];
    if &bytes[208..212] != b"MAP " {
        warnings.push("the MAP identifier is missing (pre-2014 or non-compliant header)".to_string());
    }
    if nversion != 20140 && nversion != 20141 {
        warnings.push(format!("NVERSION is {nversion}, not 20140"));
    }
    let apix = if !(cella[0].is_finite() && cella[0] > 0.0) {
        warnings.push(format!("cell size CELLA.x is {}: pixel size unknown, take it from the metadata", cella[0]));
        None
    } else if mxyz[0] <= 0 {
        warnings.push(format!("sampling MX is {}: pixel size unknown, take it from the metadata", mxyz[0]));
        None
    } else {
        let a = cella[0] as f64 / mxyz[0] as f64;
        // 1 Å/px in a pre-2014 or non-compliant header is usually a placeholder; in a
        // compliant MRC2014 header it is taken at its word.
        let compliant = &bytes[208..212] == b"MAP " && (nversion == 20140 || nversion == 20141);
        if a == 1.0 && !compliant {
            warnings.push(
                "the header gives 1 Å/px (CELLA equals the sample count), often a placeholder; check the pixel size against the metadata"
                    .to_string(),
            );
        }
        if mxyz[1] > 0 && cella[1] > 0.0 {
            let ay = cella[1] as f64 / mxyz[1] as f64;
            if (ay - a).abs() > 1e-4 * a {
                warnings.push(format!("pixel size differs along x ({a} Å) and y ({ay} Å); using x"));
            }
        }
        Some(a)
    };
    let [dmin, dmax, dmean, rms] = stored_stats;
    if dmin.is_nan() || dmax.is_nan() || dmax < dmin || dmean < dmin.min(dmax) || rms < 0.0 {
        warnings.push("header statistics (DMIN/DMAX/DMEAN/RMS) are unset".to_string());
    }
    let nlabl = int(bytes, 55, big).clamp(0, 10) as usize;
    let labels =
        (0..nlabl).map(|i| String::from_utf8_lossy(&bytes[224 + 80 * i..304 + 80 * i]).trim_end_matches(['\0', ' ']).to_string()).collect();
    let mut header = MrcHeader {
        nx: dims[0] as usize,
        ny: dims[1] as usize,
        nz: dims[2] as usize,
        mode,
        mxyz,
        cella,
        apix,
        ispg,
        nsymbt,
        data_offset: (HEADER_BYTES + nsymbt) as u64,
        origin,
        stored_stats,
        nversion,
        big_endian: big,
        labels,
        warnings,
    };
    let file_len = bytes.len() as u64;
    if header.data_offset > file_len {
        return Err(FormatError::binary(
            path,
            92,
            format!("NSYMBT says the data start at byte {}, beyond the end of the {file_len}-byte file", header.data_offset),
        ));
    }
    let available = file_len - header.data_offset;
    check_data_size(&header, available, path)?;
    let claimed = header.data_bytes();
    if claimed < available {
        header.warnings.push(format!(
            "{} bytes after the end of the data are ignored (the header describes {claimed} bytes of data, the file holds {available})",
            available - claimed
        ));
    }
    Ok(header)
}

/// Check the data size the header describes against the `available` bytes after the header
/// (module docs, "Data size"): too few is an error, and so is an excess of one image or more.
fn check_data_size(h: &MrcHeader, available: u64, path: &Path) -> Result<()> {
    // Up to (2³¹)³·4 bytes can be claimed: compute in u128 so that no claim overflows.
    let samples = h.nx as u128 * h.ny as u128 * h.nz as u128;
    let claimed = samples * h.mode.bytes() as u128;
    let image = h.nx as u128 * h.ny as u128 * h.mode.bytes() as u128;
    let available = available as u128;
    if claimed <= available && available - claimed < image {
        return Ok(());
    }
    let what = format!(
        "header claims NX·NY·NZ = {}×{}×{} samples of MODE {} ({} bytes each), {claimed} bytes of data, but the file holds",
        h.nx,
        h.ny,
        h.nz,
        h.mode.number(),
        h.mode.bytes()
    );
    let msg = if claimed > available {
        format!("{what} only {available} bytes of data (truncated file?)")
    } else {
        let fits: Vec<String> = [Mode::Int8, Mode::Int16, Mode::Float32, Mode::Uint16, Mode::Float16]
            .iter()
            .filter(|m| m.bytes() != h.mode.bytes() && samples * m.bytes() as u128 == available)
            .map(|m| m.number().to_string())
            .collect();
        let hint = if fits.is_empty() {
            "a wrong MODE, NX, NY or NZ in the header?".to_string()
        } else {
            format!("the size fits MODE {} exactly: is the header's MODE wrong?", fits.join(" or "))
        };
        format!("{what} {available} bytes of data, {} more, at least one whole image ({image} bytes): {hint}", available - claimed)
    };
    Err(FormatError::binary(path, h.data_offset, msg))
}

/// Decode `out.len()` samples of `mode` from `src` into f32.
fn decode(src: &[u8], mode: Mode, big: bool, out: &mut [f32]) {
    match (mode, big) {
        (Mode::Float32, false) => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        (Mode::Float32, true) => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        (Mode::Int8, _) => {
            for (o, &b) in out.iter_mut().zip(src) {
                *o = b as i8 as f32;
            }
        }
        (Mode::Int16, _) => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                let v = if big { i16::from_be_bytes([c[0], c[1]]) } else { i16::from_le_bytes([c[0], c[1]]) };
                *o = v as f32;
            }
        }
        (Mode::Uint16, _) => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                let v = if big { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) };
                *o = v as f32;
            }
        }
        (Mode::Float16, _) => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                let bits = if big { u16::from_be_bytes([c[0], c[1]]) } else { u16::from_le_bytes([c[0], c[1]]) };
                *o = f16::from_bits(bits).to_f32();
            }
        }
    }
}

/// Pixel statistics of a whole file (accumulated in f64 over finite samples).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Standard deviation from the mean.
    pub std: f64,
    /// Number of NaN or infinite samples (excluded from the other figures).
    pub non_finite: u64,
    /// Number of finite samples.
    pub count: u64,
}

/// Accumulates [`Stats`] over samples, chunk by chunk: each chunk's mean and sum of squared
/// deviations are computed in two passes over the chunk (which is in cache) and merged into the
/// running totals with the pairwise update of Chan, Golub and LeVeque, so that the standard
/// deviation stays accurate when the mean is large compared to the spread.
#[derive(Clone, Debug)]
pub struct StatsAccumulator {
    min: f64,
    max: f64,
    mean: f64,
    /// Sum of squared deviations from `mean`.
    m2: f64,
    count: u64,
    non_finite: u64,
}

impl Default for StatsAccumulator {
    fn default() -> Self {
        StatsAccumulator { min: f64::INFINITY, max: f64::NEG_INFINITY, mean: 0.0, m2: 0.0, count: 0, non_finite: 0 }
    }
}

impl StatsAccumulator {
    /// Add samples; NaN and infinite values are counted and otherwise ignored.
    pub fn add(&mut self, values: &[f32]) {
        for chunk in values.chunks(4096) {
            let mut n = 0u64;
            let mut sum = 0.0f64;
            for &v in chunk {
                if v.is_finite() {
                    let v = v as f64;
                    self.min = self.min.min(v);
                    self.max = self.max.max(v);
                    sum += v;
                    n += 1;
                }
            }
            self.non_finite += chunk.len() as u64 - n;
            if n == 0 {
                continue;
            }
            let mean_b = sum / n as f64;
            let m2_b: f64 = chunk.iter().filter(|v| v.is_finite()).map(|&v| (v as f64 - mean_b).powi(2)).sum();
            let (na, nb) = (self.count as f64, n as f64);
            let total = na + nb;
            let delta = mean_b - self.mean;
            self.mean += delta * nb / total;
            self.m2 += m2_b + delta * delta * na * nb / total;
            self.count += n;
        }
    }

    /// The statistics so far (all zero when no finite sample was added).
    pub fn finish(&self) -> Stats {
        if self.count == 0 {
            return Stats { min: 0.0, max: 0.0, mean: 0.0, std: 0.0, non_finite: self.non_finite, count: 0 };
        }
        let var = (self.m2 / self.count as f64).max(0.0);
        Stats { min: self.min, max: self.max, mean: self.mean, std: var.sqrt(), non_finite: self.non_finite, count: self.count }
    }
}

/// Count NaN and infinite values.
pub fn count_non_finite(values: &[f32]) -> usize {
    values.iter().filter(|v| !v.is_finite()).count()
}

/// Parse and check the header of the MRC file at `path` (the file is mapped, not read: only
/// the header page is touched).
pub fn read_header(path: impl AsRef<Path>) -> Result<MrcHeader> {
    MrcFile::open(path).map(|f| f.header)
}

/// Decode image `index` (0-based) of an MRC file whose whole content is `bytes` and whose
/// header is `header` into `out` (length `nx·ny`), converting to f32 without checking values.
/// Only that image's bytes are read. `path` is only used in messages.
pub fn decode_image(bytes: &[u8], header: &MrcHeader, path: &Path, index: usize, out: &mut [f32]) -> Result<()> {
    let h = header;
    if index >= h.nz {
        return Err(FormatError::invalid(path, format!("image index {index} (0-based) is out of range: the stack holds {} images", h.nz)));
    }
    let n = h.image_len();
    if out.len() != n {
        return Err(FormatError::invalid(path, format!("an image of {}×{} needs a buffer of {n} values, got {}", h.nx, h.ny, out.len())));
    }
    let image_bytes = n as u64 * h.mode.bytes() as u64;
    let start = h.data_offset + index as u64 * image_bytes;
    let src = usize::try_from(start)
        .ok()
        .and_then(|a| Some(a..a.checked_add(usize::try_from(image_bytes).ok()?)?))
        .and_then(|r| bytes.get(r))
        .ok_or_else(|| FormatError::binary(path, start, format!("image {index} runs past the end of the {}-byte file", bytes.len())))?;
    decode(src, h.mode, h.big_endian, out);
    Ok(())
}

/// An open, memory-mapped MRC file.
pub struct MrcFile {
    path: PathBuf,
    map: Mmap,
    header: MrcHeader,
}

impl std::fmt::Debug for MrcFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MrcFile").field("path", &self.path).field("header", &self.header).finish()
    }
}

impl MrcFile {
    /// Open and memory-map `path`, parse and check its header.
    pub fn open(path: impl AsRef<Path>) -> Result<MrcFile> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        if len < HEADER_BYTES as u64 {
            return Err(FormatError::binary(path, 0, format!("file has {len} bytes, fewer than the 1024-byte MRC header")));
        }
        // SAFETY: the mapping is read-only; a file truncated by another process while mapped
        // is outside what this reader can defend against (as for every mmap-based reader).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        let header = parse_header(&map, path)?;
        Ok(MrcFile { path: path.to_path_buf(), map, header })
    }

    pub fn header(&self) -> &MrcHeader {
        &self.header
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Number of images (sections): NZ.
    pub fn len(&self) -> usize {
        self.header.nz
    }
    pub fn is_empty(&self) -> bool {
        self.header.nz == 0
    }

    /// Ask the kernel to start reading image `index` (0-based) from disk now, without waiting
    /// for it, so that a later [`MrcFile::read_image`] finds it in memory. Only advice: an
    /// index out of range, or a system that ignores it, changes nothing.
    pub fn prefetch_image(&self, index: usize) {
        let h = &self.header;
        if index >= h.nz {
            return;
        }
        let image_bytes = h.image_len() as u64 * h.mode.bytes() as u64;
        let start = h.data_offset + index as u64 * image_bytes;
        if start + image_bytes <= self.map.len() as u64 {
            let _ = self.map.advise_range(memmap2::Advice::WillNeed, start as usize, image_bytes as usize);
        }
    }

    /// Decode image `index` (0-based) into `out` (length `nx·ny`) without checking values.
    pub fn read_image_unchecked(&self, index: usize, out: &mut [f32]) -> Result<()> {
        decode_image(&self.map, &self.header, &self.path, index, out)
    }

    /// Decode image `index` (0-based) into `out` (length `nx·ny`); an image holding NaN or
    /// infinite values is an error that gives their count.
    pub fn read_image(&self, index: usize, out: &mut [f32]) -> Result<()> {
        self.read_image_unchecked(index, out)?;
        let bad = count_non_finite(out);
        if bad > 0 {
            return Err(FormatError::invalid(&self.path, format!("image {index} (0-based) holds {bad} NaN or infinite pixel values")));
        }
        Ok(())
    }

    /// Read the whole file (a volume, or all images of a stack), rejecting NaN/Inf values.
    pub fn read_all(&self) -> Result<Vec<f32>> {
        let h = &self.header;
        let mut out = vec![0.0f32; h.image_len() * h.nz];
        let bytes = &self.map[h.data_offset as usize..(h.data_offset + h.data_bytes()) as usize];
        decode(bytes, h.mode, h.big_endian, &mut out);
        let bad = count_non_finite(&out);
        if bad > 0 {
            return Err(FormatError::invalid(&self.path, format!("the data hold {bad} NaN or infinite values")));
        }
        Ok(out)
    }

    /// Pixel statistics over the whole file, streamed one image at a time.
    pub fn stats(&self) -> Stats {
        let mut acc = StatsAccumulator::default();
        let mut buf = vec![0.0f32; self.header.image_len()];
        for i in 0..self.header.nz {
            if self.read_image_unchecked(i, &mut buf).is_ok() {
                acc.add(&buf);
            }
        }
        acc.finish()
    }
}

/// Sample type to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Mode 2.
    #[default]
    Float32,
    /// Mode 12.
    Float16,
}

impl WriteMode {
    fn mode(self) -> Mode {
        match self {
            WriteMode::Float32 => Mode::Float32,
            WriteMode::Float16 => Mode::Float16,
        }
    }
}

/// What kind of file is written: it sets ISPG, MZ and cella.z.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Volume,
    Stack,
}

fn header_bytes(dims: [usize; 3], apix: f64, mode: Mode, kind: Kind, stats: &Stats, origin_a: [f32; 3], label: &str) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_BYTES];
    let put_i = |w: usize, v: i32, h: &mut Vec<u8>| h[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
    put_i(0, dims[0] as i32, &mut h);
    put_i(1, dims[1] as i32, &mut h);
    put_i(2, dims[2] as i32, &mut h);
    put_i(3, mode.number(), &mut h);
    let mz = match kind {
        Kind::Volume => dims[2] as i32,
        Kind::Stack => 1,
    };
    put_i(7, dims[0] as i32, &mut h);
    put_i(8, dims[1] as i32, &mut h);
    put_i(9, mz, &mut h);
    put_i(16, 1, &mut h);
    put_i(17, 2, &mut h);
    put_i(18, 3, &mut h);
    put_i(22, if kind == Kind::Volume { 1 } else { 0 }, &mut h);
    put_i(23, 0, &mut h);
    put_i(27, 20140, &mut h);
    let put_f = |w: usize, v: f32, h: &mut Vec<u8>| h[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
    put_f(10, (dims[0] as f64 * apix) as f32, &mut h);
    put_f(11, (dims[1] as f64 * apix) as f32, &mut h);
    put_f(12, (mz as f64 * apix) as f32, &mut h);
    put_f(13, 90.0, &mut h);
    put_f(14, 90.0, &mut h);
    put_f(15, 90.0, &mut h);
    put_f(19, stats.min as f32, &mut h);
    put_f(20, stats.max as f32, &mut h);
    put_f(21, stats.mean as f32, &mut h);
    put_f(49, origin_a[0], &mut h);
    put_f(50, origin_a[1], &mut h);
    put_f(51, origin_a[2], &mut h);
    h[208..212].copy_from_slice(b"MAP ");
    h[212..216].copy_from_slice(&[0x44, 0x44, 0, 0]);
    put_f(54, stats.std as f32, &mut h);
    let label = label.as_bytes();
    let n = label.len().min(80);
    put_i(55, if n > 0 { 1 } else { 0 }, &mut h);
    h[224..224 + n].copy_from_slice(&label[..n]);
    for b in &mut h[224 + n..304] {
        *b = b' ';
    }
    if n == 0 {
        for b in &mut h[224..304] {
            *b = 0;
        }
    }
    h
}

fn encode(values: &[f32], mode: Mode, out: &mut Vec<u8>) {
    out.clear();
    match mode {
        Mode::Float16 => {
            for &v in values {
                out.extend_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
            }
        }
        _ => {
            for &v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// Stats of the values as they will be stored (after rounding to float16 if asked).
fn stored_stats(values: &[f32], mode: Mode) -> Stats {
    let mut acc = StatsAccumulator::default();
    if mode == Mode::Float16 {
        let mut buf = Vec::with_capacity(4096);
        for chunk in values.chunks(4096) {
            buf.clear();
            buf.extend(chunk.iter().map(|&v| f16::from_f32(v).to_f32()));
            acc.add(&buf);
        }
    } else {
        acc.add(values);
    }
    acc.finish()
}

/// Options for writing.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub mode: WriteMode,
    /// ORIGIN header fields in Å (0 unless set).
    pub origin_a: [f32; 3],
    /// One label (at most 80 characters are kept).
    pub label: String,
}

fn check_values(path: &Path, values: &[f32], expected: usize) -> Result<()> {
    if values.len() != expected {
        return Err(FormatError::invalid(path, format!("{} values given for {expected} samples", values.len())));
    }
    let bad = count_non_finite(values);
    if bad > 0 {
        return Err(FormatError::invalid(path, format!("refusing to write {bad} NaN or infinite values")));
    }
    Ok(())
}

fn write_whole(path: &Path, values: &[f32], dims: [usize; 3], apix: f64, kind: Kind, opts: &WriteOptions) -> Result<()> {
    if dims.iter().any(|&n| n == 0 || n > i32::MAX as usize) {
        return Err(FormatError::invalid(path, format!("cannot write dimensions {dims:?}")));
    }
    if !(apix > 0.0 && apix.is_finite()) {
        return Err(FormatError::invalid(path, format!("pixel size {apix} Å is not a positive number")));
    }
    let expected = dims[0].checked_mul(dims[1]).and_then(|n| n.checked_mul(dims[2]));
    check_values(path, values, expected.unwrap_or(usize::MAX))?;
    let mode = opts.mode.mode();
    let stats = stored_stats(values, mode);
    let header = header_bytes(dims, apix, mode, kind, &stats, opts.origin_a, &opts.label);
    write_atomic(path, |w| {
        w.write_all(&header)?;
        let mut buf = Vec::with_capacity(1 << 16);
        for chunk in values.chunks(1 << 14) {
            encode(chunk, mode, &mut buf);
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

/// Write a `nx×ny×nz` volume (x fastest) with pixel size `apix` Å, atomically.
pub fn write_volume(path: &Path, values: &[f32], dims: [usize; 3], apix: f64, opts: &WriteOptions) -> Result<()> {
    write_whole(path, values, dims, apix, Kind::Volume, opts)
}

/// Write `n` images of `nx×ny` (x fastest, image after image) with pixel size `apix` Å, atomically.
pub fn write_stack(path: &Path, values: &[f32], nx: usize, ny: usize, n: usize, apix: f64, opts: &WriteOptions) -> Result<()> {
    write_whole(path, values, [nx, ny, n], apix, Kind::Stack, opts)
}

/// Writes an image stack one image at a time into a temporary file; [`StackWriter::finish`]
/// completes the header (count and statistics) and renames the file into place. Dropping an
/// unfinished writer removes the temporary file.
pub struct StackWriter {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    nx: usize,
    ny: usize,
    n: usize,
    apix: f64,
    mode: Mode,
    stats: StatsAccumulator,
    buf: Vec<u8>,
    /// Float16-rounded copy of the current image (the statistics describe the stored values).
    rounded: Vec<f32>,
    opts: WriteOptions,
}

impl std::fmt::Debug for StackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackWriter")
            .field("dest", &self.dest)
            .field("nx", &self.nx)
            .field("ny", &self.ny)
            .field("images", &self.n)
            .field("mode", &self.mode)
            .finish()
    }
}

impl StackWriter {
    /// Start writing `path`: images of `nx×ny`, pixel size `apix` Å.
    pub fn create(path: &Path, nx: usize, ny: usize, apix: f64, opts: WriteOptions) -> Result<StackWriter> {
        if nx == 0 || ny == 0 {
            return Err(FormatError::invalid(path, format!("cannot write images of {nx}×{ny}")));
        }
        if !(apix > 0.0 && apix.is_finite()) {
            return Err(FormatError::invalid(path, format!("pixel size {apix} Å is not a positive number")));
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.partial{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| FormatError::io(path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&[0u8; HEADER_BYTES]).map_err(|e| FormatError::io(path, e))?;
        Ok(StackWriter {
            dest: path.to_path_buf(),
            tmp,
            file: Some(w),
            nx,
            ny,
            n: 0,
            apix,
            mode: opts.mode.mode(),
            stats: StatsAccumulator::default(),
            buf: Vec::new(),
            rounded: Vec::new(),
            opts,
        })
    }

    /// Append one image (`nx·ny` values).
    pub fn push(&mut self, image: &[f32]) -> Result<()> {
        check_values(&self.dest, image, self.nx * self.ny)?;
        if self.n >= i32::MAX as usize {
            return Err(FormatError::invalid(&self.dest, "an MRC stack holds at most 2³¹−1 images"));
        }
        encode(image, self.mode, &mut self.buf);
        if self.mode == Mode::Float16 {
            self.rounded.clear();
            self.rounded.extend(image.iter().map(|&v| f16::from_f32(v).to_f32()));
            self.stats.add(&self.rounded);
        } else {
            self.stats.add(image);
        }
        let w = self.file.as_mut().expect("push after finish");
        w.write_all(&self.buf).map_err(|e| FormatError::io(&self.dest, e))?;
        self.n += 1;
        Ok(())
    }

    /// Images written so far.
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Write the header, sync and rename into place; returns the statistics of the stored
    /// values (after float16 rounding in mode 12), as the header gives them.
    pub fn finish(mut self) -> Result<Stats> {
        if self.n == 0 {
            return Err(FormatError::invalid(&self.dest, "no images were written"));
        }
        let stats = self.stats.finish();
        let header =
            header_bytes([self.nx, self.ny, self.n], self.apix, self.mode, Kind::Stack, &stats, self.opts.origin_a, &self.opts.label);
        let mut w = self.file.take().expect("finish twice");
        let dest = self.dest.clone();
        let result = (|| -> std::io::Result<()> {
            w.flush()?;
            let mut f = w.into_inner().map_err(|e| e.into_error())?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&header)?;
            f.sync_all()?;
            Ok(())
        })();
        if let Err(e) = result.and_then(|_| std::fs::rename(&self.tmp, &dest)) {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(FormatError::io(&dest, e));
        }
        Ok(stats)
    }
}

impl Drop for StackWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_file(dims: [i32; 3], mode: i32, big: bool, data: &[u8], nsymbt: i32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_BYTES];
        let put = |w: usize, v: [u8; 4], h: &mut Vec<u8>| h[w * 4..w * 4 + 4].copy_from_slice(&v);
        let enc_i = |v: i32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let enc_f = |v: f32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        put(0, enc_i(dims[0]), &mut h);
        put(1, enc_i(dims[1]), &mut h);
        put(2, enc_i(dims[2]), &mut h);
        put(3, enc_i(mode), &mut h);
        put(7, enc_i(dims[0]), &mut h);
        put(8, enc_i(dims[1]), &mut h);
        put(9, enc_i(dims[2]), &mut h);
        put(10, enc_f(dims[0] as f32 * 1.5), &mut h);
        put(23, enc_i(nsymbt), &mut h);
        put(27, enc_i(20140), &mut h);
        h[208..212].copy_from_slice(b"MAP ");
        if big {
            h[212] = 0x11;
            h[213] = 0x11;
        } else {
            h[212] = 0x44;
            h[213] = 0x44;
        }
        h.extend(std::iter::repeat_n(0u8, nsymbt.max(0) as usize));
        h.extend_from_slice(data);
        h
    }

    #[test]
    fn every_mode_both_byte_orders() {
        let values = [-3.0f32, 0.0, 1.0, 2.5];
        for big in [false, true] {
            for mode in [0, 1, 2, 6, 12] {
                let m = Mode::from_number(mode).unwrap();
                let vals: Vec<f32> = values
                    .iter()
                    .map(|&v| if mode == 6 { v.abs() } else { v })
                    .map(|v| if mode <= 1 || mode == 6 { v.trunc() } else { v })
                    .collect();
                let mut data = Vec::new();
                for &v in &vals {
                    match m {
                        Mode::Int8 => data.push(v as i8 as u8),
                        Mode::Int16 => data.extend(if big { (v as i16).to_be_bytes() } else { (v as i16).to_le_bytes() }),
                        Mode::Uint16 => data.extend(if big { (v as u16).to_be_bytes() } else { (v as u16).to_le_bytes() }),
                        Mode::Float32 => data.extend(if big { v.to_be_bytes() } else { v.to_le_bytes() }),
                        Mode::Float16 => {
                            let b = f16::from_f32(v).to_bits();
                            data.extend(if big { b.to_be_bytes() } else { b.to_le_bytes() })
                        }
                    }
                }
                let bytes = raw_file([2, 2, 1], mode, big, &data, 8);
                let h = parse_header(&bytes, Path::new("t.mrc")).unwrap();
                assert_eq!(h.big_endian, big);
                assert_eq!(h.data_offset, 1032);
                assert_eq!(h.apix, Some(1.5));
                let mut out = vec![0.0f32; 4];
                decode(&bytes[1032..], h.mode, h.big_endian, &mut out);
                assert_eq!(out, vals, "mode {mode} big {big}");
            }
        }
    }

    #[test]
    fn oversized_claim_is_an_error_without_allocation() {
        let bytes = raw_file([100_000, 100_000, 100_000], 2, false, &[0u8; 16], 0);
        let e = parse_header(&bytes, Path::new("huge.mrc")).unwrap_err().to_string();
        assert!(e.contains("huge.mrc") && e.contains("claims"), "{e}");
    }

    #[test]
    fn largest_claim_does_not_overflow() {
        let bytes = raw_file([i32::MAX, i32::MAX, i32::MAX], 2, false, &[0u8; 16], 0);
        let e = parse_header(&bytes, Path::new("max.mrc")).unwrap_err().to_string();
        assert!(e.contains("max.mrc") && e.contains("claims") && e.contains("at byte 1024"), "{e}");
    }

    #[test]
    fn stats_stay_accurate_with_a_large_mean() {
        // 10,001 samples 1e4 + k·1e-2 (k = -5000..=5000): the exact population variance is
        // 1e-4·(n²−1)/12 with n = 10,001, i.e. sd 28.8704 (before the f32 rounding of the
        // samples); a plain sum of squares in f64 would lose about five digits to the 1e8 offset.
        let vals: Vec<f32> = (-5000..=5000).map(|k| 1e4f32 + k as f32 * 1e-2).collect();
        let mut acc = StatsAccumulator::default();
        acc.add(&vals[..3000]);
        acc.add(&vals[3000..]);
        let s = acc.finish();
        let exact_mean = vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64;
        let exact_var = vals.iter().map(|&v| (v as f64 - exact_mean).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!((s.mean - exact_mean).abs() < 1e-9, "{} {}", s.mean, exact_mean);
        assert!((s.std - exact_var.sqrt()).abs() < 1e-9, "{} {}", s.std, exact_var.sqrt());
        assert!((s.std - 28.870_7).abs() < 1e-3, "{}", s.std);
        assert_eq!(s.count, 10_001);
    }

    #[test]
    fn header_quirks_are_warnings() {
        let mut b = raw_file([2, 2, 1], 2, false, &[0u8; 16], 0);
        b[208..216].fill(0);
        b[27 * 4..27 * 4 + 4].fill(0);
        b[40..44].copy_from_slice(&0f32.to_le_bytes());
        for (w, v) in [(19, -1.0f32), (20, -2.0), (21, -3.0), (54, -1.0)] {
            b[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let h = parse_header(&b, Path::new("q.mrc")).unwrap();
        assert_eq!(h.apix, None);
        for w in ["MAP identifier", "machine stamp is 0", "NVERSION is 0", "pixel size unknown", "unset"] {
            assert!(h.warnings.iter().any(|x| x.contains(w)), "{w}: {:?}", h.warnings);
        }
        assert_eq!(h.warnings.len(), 5, "{:?}", h.warnings);
        // A compliant header has none.
        let h = parse_header(&raw_file([2, 2, 1], 2, false, &[0u8; 16], 0), Path::new("ok.mrc")).unwrap();
        assert!(h.warnings.is_empty(), "{:?}", h.warnings);
    }

    #[test]
    fn decode_image_checks_the_bytes_it_is_given() {
        let bytes = raw_file([2, 2, 3], 2, false, &[0u8; 48], 0);
        let h = parse_header(&bytes, Path::new("d.mrc")).unwrap();
        let mut out = [1.0f32; 4];
        decode_image(&bytes, &h, Path::new("d.mrc"), 2, &mut out).unwrap();
        assert_eq!(out, [0.0; 4]);
        // The same header over fewer bytes (not what parse_header checked): an error, no panic.
        let e = decode_image(&bytes[..1050], &h, Path::new("d.mrc"), 1, &mut out).unwrap_err().to_string();
        assert!(e.contains("d.mrc: at byte 1040") && e.contains("image 1 runs past the end"), "{e}");
        let e = decode_image(&bytes, &h, Path::new("d.mrc"), 3, &mut out).unwrap_err().to_string();
        assert!(e.contains("index 3") && e.contains("holds 3 images"), "{e}");
    }

    #[test]
    fn one_angstrom_is_a_placeholder_only_in_non_compliant_headers() {
        let mut b = raw_file([2, 2, 1], 2, false, &[0u8; 16], 0);
        b[40..44].copy_from_slice(&2f32.to_le_bytes());
        let h = parse_header(&b, Path::new("one.mrc")).unwrap();
        assert_eq!((h.apix, h.warnings.len()), (Some(1.0), 0), "{:?}", h.warnings);
        b[208..212].fill(0);
        let h = parse_header(&b, Path::new("one.mrc")).unwrap();
        assert_eq!(h.apix, Some(1.0));
        assert!(h.warnings.iter().any(|w| w.contains("placeholder")), "{:?}", h.warnings);
    }

    #[test]
    fn bad_fields() {
        let e = parse_header(&raw_file([2, 2, 1], 5, false, &[0u8; 16], 0), Path::new("m.mrc")).unwrap_err().to_string();
        assert!(e.contains("MODE is 5") && e.contains("byte 12"), "{e}");
        let e = parse_header(&raw_file([2, -2, 1], 2, false, &[0u8; 16], 0), Path::new("m.mrc")).unwrap_err().to_string();
        assert!(e.contains("NY is -2"), "{e}");
        let mut b = raw_file([2, 2, 1], 2, false, &[0u8; 16], 0);
        b[92..96].copy_from_slice(&(1_000_000i32).to_le_bytes());
        let e = parse_header(&b, Path::new("m.mrc")).unwrap_err().to_string();
        assert!(e.contains("NSYMBT"), "{e}");
        let e = parse_header(&[0u8; 100], Path::new("m.mrc")).unwrap_err().to_string();
        assert!(e.contains("fewer than the 1024-byte"), "{e}");
    }
}
