//! Closed-form expectations over the Gaussian input mask (SPEC §2).
//!
//! For one neuron and one input, u = w_rᵀ(x ⊙ c) ~ N(z, s²) with z = w_rᵀx and
//! s = κ‖w_r ⊙ x‖₂. This crate gives E[σ(u)] for σ = ReLU in closed form (the *smoothed ReLU*
//! σ̃) and the paper's *proxy* σ̂, the bivariate normal CDF Φ₂ and the moments E[u_r⁺u_q⁺] behind
//! the exact expected loss, in scalar f64 ([`scalar`], [`bivariate`]): the references the tensor
//! code ([`tensor`]: smoothed and proxy networks, the proxy objective, all differentiable) and the
//! Monte-Carlo checks are measured against, and a parallel f64 evaluation of the exact expected
//! loss at fixed weights ([`host`]).

pub mod bivariate;
pub mod expected;
pub mod host;
pub mod normal;
pub mod scalar;
pub mod tensor;

pub use bivariate::bivariate_norm_cdf;
pub use host::{ExactLossValue, exact_loss};
pub use scalar::{
    norm_cdf, norm_pdf, proxy_relu, relu_product_moment, smoothed_output_and_variance,
    smoothed_relu,
};
