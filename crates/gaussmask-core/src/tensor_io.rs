//! Host ↔ tensor conversions in f64, whatever the device's float type.

use burn::tensor::{Device, Tensor, TensorData};

/// Reads any float tensor back as f64 values (row-major).
pub fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .try_to_vec_as::<f64>()
        .expect("float tensor converts to f64")
}

/// Builds a float tensor of the device's float type from f64 values.
///
/// # Shapes
/// - `values`: the product of `shape` values, row-major
pub fn from_f64<const D: usize>(values: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}
