"""SMTP mailer (aiosmtplib)."""
