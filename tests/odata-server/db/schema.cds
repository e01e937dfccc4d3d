// An ERP-like model, as a mid-sized German manufacturer's ERP exposes it over OData v4.
// The names are the ERP's, not Kontor's: the odata-erp plugin maps them in its config.
namespace kontor.erp;

entity PaymentTerms {
  key code            : String(4);
      description     : String(80);
      netDays         : Integer;
      discountDays    : Integer;
      discountPercent : Decimal(5, 2);
}

entity Customers {
  key ID              : String(12);
      name            : String(120);
      vatId           : String(20);
      email           : String(120);
      phone           : String(40);
      street          : String(120);
      postalCode      : String(10);
      city            : String(60);
      country         : String(2);
      industry        : String(40);
      language        : String(5);
      accountOwner    : String(60); // the responsible sales employee, as Kontor's user
      creditLimit     : Decimal(15, 2);
      currency        : String(3);
      paymentTerms    : Association to PaymentTerms;
      contacts        : Association to many Contacts on contacts.customer = $self;
      deliveries      : Association to many Deliveries on deliveries.customer = $self;
      contracts       : Association to many Contracts on contracts.customer = $self;
      openItems       : Association to many OpenItems on openItems.customer = $self;
}

entity Contacts {
  key ID               : String(14);
      customer         : Association to Customers;
      name             : String(120);
      role             : String(60);
      email            : String(120);
      phone            : String(40);
      preferredChannel : String(10);
      consent          : String(40); // comma-separated channels
      language         : String(5);
}

entity Deliveries {
  key ID                : String(16);
      customer          : Association to Customers;
      salesOrder        : String(12);
      article           : String(20);
      articleName       : String(80);
      series            : String(12);
      serialNumber      : String(24);
      quantity          : Integer;
      deliveryDate      : Date;
      maintenanceMonths : Integer;
      nextMaintenance   : Date;
}

entity Contracts {
  key ID        : String(12);
      customer  : Association to Customers;
      kind      : String(20);
      title     : String(120);
      validFrom : Date;
      validTo   : Date;
      status    : String(10);
}

entity OpenItems {
  key document   : String(12);
      customer   : Association to Customers;
      kind       : String(12);
      issuedOn   : Date;
      dueOn      : Date;
      amount     : Decimal(15, 2);
      openAmount : Decimal(15, 2);
      currency   : String(3);
}
