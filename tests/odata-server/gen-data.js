// Generates the test ERP's database: node gen-data.js --customers N --out FILE
//
// Deterministic (a seeded generator), German, Austrian and Swiss customers with umlauts.
// Every customer owns a heating controller of series HX-1; about one in seven bought a
// heat pump of series WP-300 (the series the recall tests look for), one in five a
// WP-500. Deliveries are spread over 2019–2026.
const cds = require('@sap/cds')
const Database = require('better-sqlite3')
const fs = require('fs')
const path = require('path')

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? process.argv[i + 1] : fallback
}

const customers = Number(arg('customers', '10000'))
const out = path.resolve(arg('out', 'erp.sqlite'))

// mulberry32
let seed = 0x4b6f6e74
function random() {
  seed |= 0; seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = (list) => list[Math.floor(random() * list.length)]
const pad = (n, width) => String(n).padStart(width, '0')

const surnames = ['Müller', 'Schäfer', 'Weiß', 'Köhler', 'Groß', 'Jäger', 'Bäcker', 'Schröder',
  'Krüger', 'Hoffmann', 'Fuchs', 'Öztürk', 'Günther', 'Möller', 'Wüst', 'Schmitz', 'Lehmann',
  'Böhm', 'Kühn', 'Haß']
const trades = ['Kältetechnik GmbH', 'Heizungsbau KG', 'Sanitär & Wärme GmbH', 'Gebäudetechnik AG',
  'Haustechnik e.K.', 'Klimaanlagen GmbH & Co. KG', 'Energiesysteme GmbH']
// Who in sales owns the account (not drawn from the generator: the rest stays as it was).
const owners = ['katrin.vogel', 'moritz.klein', null]
const industries = ['HVAC', 'Plumbing', 'Facility Management', 'Construction']
const places = [
  ['DE', '80331', 'München'], ['DE', '50667', 'Köln'], ['DE', '40213', 'Düsseldorf'],
  ['DE', '90402', 'Nürnberg'], ['DE', '97070', 'Würzburg'], ['DE', '23552', 'Lübeck'],
  ['DE', '66111', 'Saarbrücken'], ['DE', '37073', 'Göttingen'], ['DE', '49074', 'Osnabrück'],
  ['DE', '01067', 'Dresden'], ['AT', '1010', 'Wien'], ['AT', '8010', 'Graz'],
  ['AT', '6020', 'Innsbruck'], ['CH', '8001', 'Zürich'], ['CH', '3011', 'Bern'],
]
const streets = ['Hauptstraße', 'Bahnhofstraße', 'Königsallee', 'Mühlenweg', 'Schloßplatz',
  'Lindenstraße', 'Gartenstraße', 'Am Wäldchen', 'Brückenstraße', 'Südring']
const firstNames = ['Jürgen', 'Björn', 'Sören', 'Jörg', 'Käthe', 'Ursula', 'Zoë', 'Günter',
  'Hannelore', 'Lena', 'Maximilian', 'Renée']
const roles = ['Geschäftsführung', 'Einkauf', 'Technik', 'Buchhaltung']
const articles = [
  ['HX-1-C', 'Heizungsregler HX-1 Comfort', 'HX-1', 12],
  ['WP-300-A', 'Wärmepumpe WP 300 Außeneinheit', 'WP-300', 12],
  ['WP-500-A', 'Wärmepumpe WP 500 Außeneinheit', 'WP-500', 12],
  ['KS-20', 'Kältespeicher KS 20', 'KS-20', 24],
  ['ZB-FILTER', 'Filterset für Lüftungsgeräte', null, null],
]
const terms = [
  ['Z001', '14 Tage 2 % Skonto, 30 Tage netto', 30, 14, 2.0],
  ['Z002', '30 Tage netto', 30, null, null],
  ['Z003', '10 Tage 3 % Skonto, 45 Tage netto', 45, 10, 3.0],
  ['Z004', 'Sofort ohne Abzug', 0, null, null],
]

function date(daysSince2019) {
  const d = new Date(Date.UTC(2019, 0, 1) + daysSince2019 * 86400000)
  return d.toISOString().slice(0, 10)
}
function addMonths(iso, months) {
  const d = new Date(iso + 'T00:00:00Z')
  d.setUTCMonth(d.getUTCMonth() + months)
  return d.toISOString().slice(0, 10)
}
const ascii = (s) => s.toLowerCase().replace(/ä/g, 'ae').replace(/ö/g, 'oe').replace(/ü/g, 'ue')
  .replace(/ß/g, 'ss').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '')

async function main() {
  fs.rmSync(out, { force: true })
  const model = await cds.load([path.join(__dirname, 'db/schema.cds'), path.join(__dirname, 'srv/erp-service.cds')])
  const db = await cds.connect.to('gen', { kind: 'sqlite', credentials: { url: out } })
  await cds.deploy(model).to(db)
  await db.disconnect?.()

  const sql = new Database(out)
  sql.pragma('journal_mode = WAL')
  const insert = (table, columns) => sql.prepare(
    `INSERT INTO kontor_erp_${table} (${columns.join(',')}) VALUES (${columns.map(() => '?').join(',')})`)
  const term = insert('PaymentTerms', ['code', 'description', 'netDays', 'discountDays', 'discountPercent'])
  const customer = insert('Customers', ['ID', 'name', 'vatId', 'email', 'phone', 'street', 'postalCode',
    'city', 'country', 'industry', 'language', 'accountOwner', 'creditLimit', 'currency', 'paymentTerms_code'])
  const contact = insert('Contacts', ['ID', 'customer_ID', 'name', 'role', 'email', 'phone',
    'preferredChannel', 'consent', 'language'])
  const delivery = insert('Deliveries', ['ID', 'customer_ID', 'salesOrder', 'article', 'articleName',
    'series', 'serialNumber', 'quantity', 'deliveryDate', 'maintenanceMonths', 'nextMaintenance'])
  const contract = insert('Contracts', ['ID', 'customer_ID', 'kind', 'title', 'validFrom', 'validTo', 'status'])
  const item = insert('OpenItems', ['document', 'customer_ID', 'kind', 'issuedOn', 'dueOn', 'amount',
    'openAmount', 'currency'])

  let deliveries = 0
  sql.transaction(() => {
    for (const t of terms) term.run(...t)
    for (let i = 1; i <= customers; i++) {
      const id = `K-${pad(i, 6)}`
      const surname = pick(surnames)
      const name = `${surname} ${pick(trades)}`
      const [country, postalCode, city] = pick(places)
      const language = country === 'CH' && random() < 0.3 ? 'fr-CH' : `de-${country}`
      const domain = i % 50 === 7 ? `${surname.toLowerCase()}-haustechnik.de` : 'example.de'
      const email = `info-${pad(i, 6)}@${i % 50 === 7 ? domain : ascii(surname) + '.' + domain}`
      const vat = country === 'DE' ? `DE${pad(100000000 + i, 9)}` :
        country === 'AT' ? `ATU${pad(10000000 + i, 8)}` : `CHE-${pad(100000000 + i, 9)}`
      const currency = country === 'CH' ? 'CHF' : 'EUR'
      customer.run(id, name, vat, email, `+49 89 ${pad(i, 7)}`, `${pick(streets)} ${1 + Math.floor(random() * 120)}`,
        postalCode, city, country, pick(industries), language, owners[i % owners.length],
        (10 + Math.floor(random() * 90)) * 1000,
        currency, pick(terms)[0])
      const contacts = 1 + Math.floor(random() * 2)
      for (let c = 1; c <= contacts; c++) {
        const first = pick(firstNames)
        const channel = pick(['email', 'email', 'phone', 'letter'])
        const consent = channel === 'letter' ? 'letter' : channel === 'phone' ? 'phone,email' : 'email'
        contact.run(`${id}-P${c}`, id, `${first} ${surname}`, pick(roles),
          `${ascii(first)}.${ascii(surname)}-${pad(i, 6)}@example.de`, `+49 171 ${pad(i * 10 + c, 8)}`,
          channel, consent, language)
      }
      const bought = [articles[0]]
      if (i % 7 === 3) bought.push(articles[1])
      if (i % 5 === 1) bought.push(articles[2])
      if (i % 11 === 4) bought.push(articles[3])
      if (random() < 0.3) bought.push(articles[4])
      let n = 0
      for (const [article, articleName, series, months] of bought) {
        n += 1
        deliveries += 1
        const delivered = date(Math.floor(random() * 2800))
        delivery.run(`${id}-L${n}`, id, `AB-${pad(deliveries, 8)}`, article, articleName, series,
          series ? `${series}-${pad(i, 6)}-${n}` : null, series ? 1 : 1 + Math.floor(random() * 10),
          delivered, months, months ? addMonths(delivered, months * Math.ceil(((Date.UTC(2026, 10, 1) - Date.parse(delivered)) / 86400000) / (months * 30.4))) : null)
      }
      if (random() < 0.6) {
        const from = date(Math.floor(random() * 2000))
        contract.run(`V-${pad(i, 6)}-1`, id, 'maintenance', 'Wartungsvertrag Wärmepumpe', from, null, 'active')
      }
      if (random() < 0.2) {
        contract.run(`V-${pad(i, 6)}-2`, id, 'service-level', 'Service-Level Premium (4 h Reaktionszeit)',
          date(100), date(1500), 'ended')
      }
      const items = Math.floor(random() * 3)
      for (let k = 1; k <= items; k++) {
        const issued = date(2500 + Math.floor(random() * 300))
        const amount = (100 + Math.floor(random() * 9900)) + Math.floor(random() * 100) / 100
        const open = k === 2 ? Math.round(amount * 50) / 100 : amount
        item.run(`RE-${pad(i, 6)}${k}`, id, 'invoice', issued, addMonths(issued, 1), amount, open, currency)
      }
    }
  })()
  // What a real ERP's database has: indexes on the foreign keys and the series, so that
  // `deliveries/any(...)` and `$expand` do not scan every delivery for every customer.
  sql.exec(`
    CREATE INDEX deliveries_by_customer ON kontor_erp_Deliveries (customer_ID, series);
    CREATE INDEX deliveries_by_series ON kontor_erp_Deliveries (series, customer_ID);
    CREATE INDEX contacts_by_customer ON kontor_erp_Contacts (customer_ID);
    CREATE INDEX contracts_by_customer ON kontor_erp_Contracts (customer_ID);
    CREATE INDEX open_items_by_customer ON kontor_erp_OpenItems (customer_ID);
    CREATE INDEX customers_by_email ON kontor_erp_Customers (email);
    CREATE INDEX customers_by_vat ON kontor_erp_Customers (vatId);
    ANALYZE;
  `)
  sql.close()
  console.log(`wrote ${customers} customers and ${deliveries} deliveries to ${out}`)
}

main().catch((e) => { console.error(e); process.exit(1) })
