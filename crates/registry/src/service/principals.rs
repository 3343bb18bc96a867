//! Thing principals: attach, detach, and the lists both ways.

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, key, prefix};

use super::{Registry, load_thing};
use crate::domain::{check_name, check_principal};

impl Registry {
    pub(crate) async fn attach_thing_principal(
        &self,
        thing: String,
        principal: String,
    ) -> Result<(), AwsError> {
        check_name("thing name", &thing)?;
        check_principal(&principal)?;
        self.writer
            .mutate(move |c| {
                load_thing(c, &thing)?;
                c.put(key(&["tprin", &thing, &principal]), &())?;
                c.put(key(&["pthing", &principal, &thing]), &())
            })
            .await
    }

    pub(crate) async fn detach_thing_principal(
        &self,
        thing: String,
        principal: String,
    ) -> Result<(), AwsError> {
        check_name("thing name", &thing)?;
        check_principal(&principal)?;
        self.writer
            .mutate(move |c| {
                load_thing(c, &thing)?;
                if c.exists(&key(&["tprin", &thing, &principal]))? {
                    c.remove(key(&["tprin", &thing, &principal]));
                    c.remove(key(&["pthing", &principal, &thing]));
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn list_thing_principals(
        &self,
        thing: &str,
        page: Page,
    ) -> Result<Paged<String>, AwsError> {
        check_name("thing name", thing)?;
        load_thing(&self.reader(), thing)?;
        let principals = self
            .store
            .iter(&prefix(&["tprin", thing]), page.after())
            .map(|e| e.map(|(n, _)| (n.clone(), n)));
        page.collect(principals)
    }

    pub(crate) fn list_principal_things(
        &self,
        principal: &str,
        page: Page,
    ) -> Result<Paged<String>, AwsError> {
        check_principal(principal)?;
        let things = self
            .store
            .iter(&prefix(&["pthing", principal]), page.after())
            .map(|e| e.map(|(n, _)| (n.clone(), n)));
        page.collect(things)
    }
}
