//! Any bytes as a client's MQTT stream: the sessions' reader decodes
//! packets or refuses them (never panics, never hangs), as a new
//! connection does (the CONNECT picks the protocol level) and with either
//! codec forced.

#![no_main]

use herald_gateway::fuzzing::{MqttLevel, mqtt_decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for level in [MqttLevel::FromConnect, MqttLevel::V311, MqttLevel::V5] {
        let _ = mqtt_decode(data, level);
    }
});
