//! Event configurations: which registry event types the gateway publishes
//! (`DescribeEventConfigurations`, `UpdateEventConfigurations`).

use herald_proto::error::AwsError;
use herald_store::now_ms;

use super::{ConfigService, EVENT_CONFIG_KEY};
use crate::domain::{ConfigEvent, EVENT_TYPES, EventConfigurations, invalid};

impl ConfigService {
    /// Writes the default event configurations at first start.
    pub(crate) async fn initialize(&self) -> Result<(), AwsError> {
        self.writer
            .mutate(|c| {
                if c.get::<EventConfigurations>(EVENT_CONFIG_KEY)?.is_none() {
                    let config = EventConfigurations::new(now_ms());
                    c.put(EVENT_CONFIG_KEY.to_vec(), &config)?;
                    c.log(ConfigEvent::EventConfigurations {
                        enabled: config.enabled,
                    });
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn describe_event_configurations(&self) -> Result<EventConfigurations, AwsError> {
        Ok(self
            .store
            .get(EVENT_CONFIG_KEY)?
            .unwrap_or_else(|| EventConfigurations::new(now_ms())))
    }

    pub(crate) async fn update_event_configurations(
        &self,
        enabled: Vec<(String, bool)>,
    ) -> Result<(), AwsError> {
        if let Some((unknown, _)) = enabled
            .iter()
            .find(|(k, _)| !EVENT_TYPES.contains(&k.as_str()))
        {
            return Err(invalid(format!(
                "{unknown:?} is not an event type; the event types are {}",
                EVENT_TYPES.join(", ")
            )));
        }
        self.writer
            .mutate(move |c| {
                let now = now_ms();
                let mut config = c
                    .get::<EventConfigurations>(EVENT_CONFIG_KEY)?
                    .unwrap_or_else(|| EventConfigurations::new(now));
                config.enabled.extend(enabled);
                config.last_modified_date_ms = now;
                c.put(EVENT_CONFIG_KEY.to_vec(), &config)?;
                c.log(ConfigEvent::EventConfigurations {
                    enabled: config.enabled,
                });
                Ok(())
            })
            .await
    }
}
