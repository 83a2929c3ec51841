//! Route core tests on simulated time.
