//! The network: the ResNeXt architecture built from Keras-default layers, the built network on
//! its device, and its Keras-style summary.
pub mod architecture;
pub mod keras;
pub mod network;
pub mod parameters;
pub mod summary;
