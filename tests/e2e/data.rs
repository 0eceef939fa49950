//! The CIFAR-10 reader on the real (shared) data.
mod common;
use resnext::data::{class_names, Cifar10};
use tch::{Kind, Tensor};

#[test]
fn loads_the_real_dataset_with_the_published_statistics() {
    let start = std::time::Instant::now();
    let data = Cifar10::load(&common::data_dir()).unwrap();
    eprintln!("loaded 60,000 images in {:?}", start.elapsed());
    assert_eq!(data.train.len(), 50_000);
    assert_eq!(data.test.len(), 10_000);
    assert_eq!(data.train.images.kind(), Kind::Uint8);
    let train_counts = data.train.labels.bincount::<Tensor>(None, 10);
    assert_eq!(Vec::<i64>::try_from(&train_counts).unwrap(), vec![5000; 10]);
    let test_counts = data.test.labels.bincount::<Tensor>(None, 10);
    assert_eq!(Vec::<i64>::try_from(&test_counts).unwrap(), vec![1000; 10]);
    // Figures from the shared copy's README (0-255 scale, population std).
    let pixels = data.train.images.to_kind(Kind::Double);
    let mean = Vec::<f64>::try_from(pixels.mean_dim(&[0i64, 2, 3][..], false, Kind::Double)).unwrap();
    let std = Vec::<f64>::try_from(pixels.std_correction(&[0i64, 2, 3][..], 0, false)).unwrap();
    for (got, want) in mean.iter().zip([125.27, 122.93, 113.86]) {
        assert!((got - want).abs() <= 0.01, "mean {mean:?}");
    }
    for (got, want) in std.iter().zip([62.57, 61.92, 66.48]) {
        assert!((got - want).abs() <= 0.01, "std {std:?}");
    }
    assert_eq!(class_names(&common::data_dir())[0], "airplane");
}
