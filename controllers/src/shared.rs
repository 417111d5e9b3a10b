//! Helpers more than one loop needs, in one place so that every loop (and the scheduler)
//! agrees: the one label-selector matcher, object hashing for child names, scaled
//! int-or-percent values, quantities, the order pods are deleted in, the pods an endpoint lists,
//! toleration and node-affinity matching, and the event recorder.

pub mod endpoint_pods;
pub mod hash;
pub mod labels;
pub mod quantity;
pub mod ranking;
pub mod recorder;
pub mod scale;
pub mod scheduling;
pub mod slice_writes;
