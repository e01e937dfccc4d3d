// Authentication for the test ERP: HTTP Basic with ERP_USER/ERP_PASSWORD, or a bearer
// token ERP_TOKEN, as a real ERP's API gateway would ask. Anything else is 401 with an
// OData error body.
const cds = require('@sap/cds')

const user = process.env.ERP_USER || 'kontor'
const password = process.env.ERP_PASSWORD || 'Geheim-Passwört-1'
const token = process.env.ERP_TOKEN || 'kontor-test-token'

function refuse(res, message) {
  res.status(401)
    .set('WWW-Authenticate', 'Basic realm="ERP", Bearer realm="ERP"')
    .json({ error: { code: '401', message } })
}

module.exports = function auth(req, res, next) {
  const header = req.headers.authorization
  if (!header) return refuse(res, 'Authentication required: send Basic or Bearer credentials')
  const [scheme, value = ''] = header.split(' ')
  if (scheme.toLowerCase() === 'basic') {
    const decoded = Buffer.from(value, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0 || decoded.slice(0, colon) !== user || decoded.slice(colon + 1) !== password) {
      return refuse(res, `Invalid user name or password for user '${decoded.slice(0, Math.max(colon, 0))}'`)
    }
    req.user = new cds.User({ id: user, roles: ['authenticated-user'] })
    return next()
  }
  if (scheme.toLowerCase() === 'bearer') {
    if (value !== token) return refuse(res, 'Invalid or expired bearer token')
    req.user = new cds.User({ id: 'token-client', roles: ['authenticated-user'] })
    return next()
  }
  refuse(res, `Unsupported authentication scheme '${scheme}'`)
}
