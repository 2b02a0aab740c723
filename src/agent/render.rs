//! Exposition of the USE snapshot.
