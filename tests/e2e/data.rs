//! The CIFAR-10 reader on the real data: the official release, or the JPEG-recompressed copy
//! these machines keep (its README publishes its statistics beside the official ones).
use crate::common::*;
use resnext::data::{class_names, Cifar10, Statistics};
use tch::Kind;

/// (which copy, train mean, train std) on the 0-255 scale, population std.
const KNOWN: [(&str, [f64; 3], [f64; 3]); 2] = [
    ("the official release", [125.31, 122.95, 113.87], [62.99, 62.09, 66.70]),
    ("the JPEG-recompressed copy", [125.27, 122.93, 113.86], [62.57, 61.92, 66.48]),
];

#[test]
fn loads_the_real_dataset_with_the_published_statistics() {
    let start = std::time::Instant::now();
    let data = Cifar10::load(&data_dir(), None).unwrap();
    eprintln!("loaded 60,000 images in {:?}", start.elapsed());
    assert_eq!(data.train.images.kind(), Kind::Uint8);
    let Statistics { train_images, test_images, train_per_class, test_per_class, train_mean, train_std } =
        data.statistics();
    assert_eq!((train_images, test_images), (50_000, 10_000));
    assert_eq!(train_per_class, vec![5000; 10]);
    assert_eq!(test_per_class, vec![1000; 10]);
    let close = |a: [f64; 3], b: [f64; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 0.01);
    let copy = KNOWN.iter().find(|(_, mean, std)| close(train_mean, *mean) && close(train_std, *std));
    let (name, _, _) = copy.unwrap_or_else(|| panic!("mean {train_mean:?} std {train_std:?} match no known copy"));
    eprintln!("{} is {name}", data_dir().display());
    assert_eq!(class_names(&data_dir())[0], "airplane");
    // `resnext data check` reports the same figures.
    let output = run_resnext(&["data", "check", "--data-dir", &data_dir().display().to_string()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let [r, g, b] = train_mean;
    assert!(stdout(&output).contains(&format!("train mean (0-255): {r:.2}, {g:.2}, {b:.2}")), "{}", stdout(&output));
}
