-- The PUQcloud panel tables the operator reads and writes, for the embedded SQLite database.
-- Same names, columns, defaults, unique keys and cascades as the panel's own migrations
-- (../shared/panel-contract.md). unicode_ci is a collation the operator registers that compares
-- like MySQL's utf8mb4_unicode_ci: case- and accent-insensitive, trailing spaces ignored.
-- Timestamps are TEXT in the panel's "Y-m-d H:i:s" form (a TIMESTAMP type would make the driver
-- re-format them on read).
CREATE TABLE IF NOT EXISTS users (
  uuid TEXT NOT NULL PRIMARY KEY,
  email VARCHAR(255) NOT NULL COLLATE unicode_ci,
  phone_number VARCHAR(255) NULL DEFAULT NULL COLLATE unicode_ci,
  password VARCHAR(255) NOT NULL,
  status VARCHAR(255) NOT NULL DEFAULT 'new',
  two_factor INTEGER NOT NULL DEFAULT 0,
  disable INTEGER NOT NULL DEFAULT 0,
  firstname VARCHAR(255) NOT NULL,
  lastname VARCHAR(255) NULL DEFAULT NULL,
  email_verified INTEGER NOT NULL DEFAULT 0,
  phone_verified INTEGER NOT NULL DEFAULT 0,
  language VARCHAR(255) NULL DEFAULT NULL,
  notes TEXT NULL,
  admin_notes TEXT NULL,
  password_reset_token VARCHAR(255) NULL,
  password_reset_token_created_at TEXT NULL,
  remember_token VARCHAR(100) NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_unique ON users (email COLLATE unicode_ci);
CREATE UNIQUE INDEX IF NOT EXISTS users_phone_number_unique ON users (phone_number COLLATE unicode_ci);

CREATE TABLE IF NOT EXISTS verifications (
  uuid TEXT NOT NULL PRIMARY KEY,
  user_uuid TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
  type VARCHAR(255) NOT NULL,
  value VARCHAR(255) NULL COLLATE unicode_ci,
  secret VARCHAR(255) NOT NULL,
  device_name VARCHAR(255) NOT NULL,
  verified INTEGER NOT NULL DEFAULT 0,
  "default" INTEGER NOT NULL DEFAULT 0,
  expires_at TEXT NULL,
  last_used_at TEXT NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL
);
CREATE INDEX IF NOT EXISTS verifications_user_uuid_index ON verifications (user_uuid);

CREATE TABLE IF NOT EXISTS clients (
  uuid TEXT NOT NULL PRIMARY KEY,
  credit_limit DECIMAL(15,2) NOT NULL DEFAULT 0,
  firstname VARCHAR(255) NOT NULL,
  lastname VARCHAR(255) NULL,
  company_name VARCHAR(255) NULL COLLATE unicode_ci,
  tax_id VARCHAR(255) NULL COLLATE unicode_ci,
  status VARCHAR(255) NOT NULL DEFAULT 'new',
  language VARCHAR(255) NULL,
  currency_uuid TEXT NULL,
  notes TEXT NULL,
  admin_notes TEXT NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS clients_company_name_unique ON clients (company_name COLLATE unicode_ci);
CREATE UNIQUE INDEX IF NOT EXISTS clients_tax_id_unique ON clients (tax_id COLLATE unicode_ci);

CREATE TABLE IF NOT EXISTS client_x_user (
  client_uuid TEXT NOT NULL REFERENCES clients (uuid) ON DELETE CASCADE,
  user_uuid TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
  owner INTEGER NOT NULL DEFAULT 0,
  permissions TEXT NULL,
  notifications TEXT NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL,
  PRIMARY KEY (user_uuid, client_uuid)
);
CREATE INDEX IF NOT EXISTS client_x_user_client_uuid_index ON client_x_user (client_uuid);

CREATE TABLE IF NOT EXISTS activity_logs (
  uuid TEXT NOT NULL PRIMARY KEY,
  admin_uuid TEXT NULL,
  client_uuid TEXT NULL REFERENCES clients (uuid) ON DELETE CASCADE,
  user_uuid TEXT NULL REFERENCES users (uuid) ON DELETE CASCADE,
  level VARCHAR(255) NOT NULL,
  action VARCHAR(255) NOT NULL,
  description TEXT NULL,
  model_type VARCHAR(255) NULL,
  model_uuid TEXT NULL,
  model_old_data TEXT NULL,
  model_new_data TEXT NULL,
  ip_address VARCHAR(255) NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL
);
