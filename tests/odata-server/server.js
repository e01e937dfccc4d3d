// Test hooks around the CAP server, outside the OData paths and without authentication:
//   POST /test/faults {"status": 429, "count": 2, "retryAfter": 1}
//        the next `count` OData requests answer `status` (with Retry-After when given);
//   GET  /test/requests  the OData request URLs seen so far, oldest first;
//   DELETE /test/requests  forgets them.
const cds = require('@sap/cds')
const express = require('express')

let faults = { status: 0, count: 0, retryAfter: null }
let requests = []

cds.on('bootstrap', (app) => {
  app.post('/test/faults', express.json(), (req, res) => {
    faults = { status: req.body.status, count: req.body.count ?? 1, retryAfter: req.body.retryAfter ?? null }
    res.json(faults)
  })
  app.get('/test/requests', (_req, res) => res.json(requests))
  app.delete('/test/requests', (_req, res) => { requests = []; res.status(204).end() })
  app.use('/odata', (req, res, next) => {
    requests.push(req.originalUrl)
    if (requests.length > 10000) requests.shift()
    if (faults.count > 0) {
      faults.count -= 1
      if (faults.retryAfter !== null) res.set('Retry-After', String(faults.retryAfter))
      return res.status(faults.status).json({
        error: { code: String(faults.status), message: `Injected fault ${faults.status}` },
      })
    }
    next()
  })
})

module.exports = cds.server
