//! CNI: the specification's data shared by the plugin process and the agent.

pub mod spec;
