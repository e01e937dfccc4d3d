using kontor.erp as erp from '../db/schema';

// Read-only, authenticated, with a server page size of 500 rows so that longer
// results come back in pages with @odata.nextLink.
@path    : '/odata/v4/erp'
@requires: 'authenticated-user'
@readonly
@cds.query.limit: { default: 500, max: 500 }
service ErpService {
  entity Customers    as projection on erp.Customers;
  entity Contacts     as projection on erp.Contacts;
  entity Deliveries   as projection on erp.Deliveries;
  entity Contracts    as projection on erp.Contracts;
  entity OpenItems    as projection on erp.OpenItems;
  entity PaymentTerms as projection on erp.PaymentTerms;
}

// The same data under another ERP's names (German, as in many older ERPs): the plugin
// serves both through its field mapping alone.
@path    : '/odata/v4/kunden'
@requires: 'authenticated-user'
@readonly
service KundenService {
  entity Kunden as projection on erp.Customers {
    key ID         as Kundennummer,
        name       as Name1,
        vatId      as UStIdNr,
        email      as EMail,
        phone      as Telefon,
        street     as Strasse,
        postalCode as PLZ,
        city       as Ort,
        country    as Land,
        industry   as Branche,
        language   as Sprache
  };
}
