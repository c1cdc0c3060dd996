"""The customers: records, phone numbers in E.164, CSV and XLSX imports, demo
generation and the admin job records that run them. Uses `app.core` and
`app.integrations` (an unsubscribe's event).
"""
