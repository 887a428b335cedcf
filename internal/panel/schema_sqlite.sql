-- The PUQcloud 1.3.0 panel tables the operator reads and writes (and the tables their foreign keys
-- need), for the embedded SQLite database: the closest SQLite form of the panel's own migrations
-- (database/migrations/*, named per table), in their order. Same names, column order, nullability,
-- defaults, unique keys and cascading foreign keys (enforced: the store opens SQLite with
-- foreign_keys(1)). internal/testdb/schema_test.go checks it against the same expectations as the
-- MariaDB test schema.
-- Types: uuid, datetime and timestamp columns are TEXT; timestamps hold the panel's
-- "Y-m-d H:i:s" (a TIMESTAMP type would make the driver re-format them on read); booleans are
-- INTEGER 0/1. unicode_ci is a collation the store registers that compares like MySQL's
-- utf8mb4_unicode_ci (case- and accent-insensitive, trailing spaces ignored); it is on the
-- columns the operator looks rows up by or keeps unique (users.email, users.phone_number,
-- clients.company_name, clients.tax_id, verifications.value).
-- CREATE ... IF NOT EXISTS: a database made by an earlier release keeps its tables as they are
-- and gains the missing ones.

-- database/migrations/2025_01_01_003001_create_admins_table.php
CREATE TABLE IF NOT EXISTS admins (
  uuid TEXT NOT NULL PRIMARY KEY,
  email VARCHAR(255) NOT NULL COLLATE unicode_ci,
  phone_number VARCHAR(255) NULL COLLATE unicode_ci,
  password VARCHAR(255) NOT NULL,
  two_factor INTEGER NOT NULL DEFAULT 0,
  disable INTEGER NOT NULL DEFAULT 0,
  email_verified INTEGER NOT NULL DEFAULT 0,
  phone_verified INTEGER NOT NULL DEFAULT 0,
  firstname VARCHAR(255) NOT NULL,
  lastname VARCHAR(255) NULL,
  admin_notes TEXT NULL,
  dashboard TEXT NULL,
  client_summary_dashboard TEXT NULL,
  old_permissions TEXT NULL,
  language VARCHAR(255) NULL,
  remember_token VARCHAR(100) NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS admins_email_unique ON admins (email COLLATE unicode_ci);
CREATE UNIQUE INDEX IF NOT EXISTS admins_phone_number_unique ON admins (phone_number COLLATE unicode_ci);

-- database/migrations/2025_01_01_005001_create_users_table.php
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

-- database/migrations/2025_01_01_005002_create_verifications_table.php
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

-- database/migrations/2025_01_01_006001_create_clients_table.php, with the clients indexes of
-- database/migrations/2025_12_10_100001_add_indexes_to_transactions_and_clients.php (its
-- full-text index on notes has no SQLite equivalent and is left out)
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
CREATE INDEX IF NOT EXISTS idx_currency_uuid ON clients (currency_uuid);
CREATE INDEX IF NOT EXISTS idx_clients_status ON clients (status);
CREATE INDEX IF NOT EXISTS idx_clients_name ON clients (firstname, lastname);

-- database/migrations/2025_01_01_006002_create_client_x_user_table.php
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

-- database/migrations/2025_01_01_006004_create_client_session_logs_table.php
CREATE TABLE IF NOT EXISTS client_session_logs (
  uuid TEXT NOT NULL PRIMARY KEY,
  client_uuid TEXT NOT NULL REFERENCES clients (uuid) ON DELETE CASCADE,
  user_uuid TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
  action VARCHAR(255) NOT NULL,
  ip_address VARCHAR(255) NULL,
  session_id VARCHAR(255) NULL,
  url TEXT NOT NULL,
  method VARCHAR(255) NOT NULL,
  user_agent TEXT NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL
);
CREATE INDEX IF NOT EXISTS client_session_logs_client_uuid_index ON client_session_logs (client_uuid);
CREATE INDEX IF NOT EXISTS client_session_logs_user_uuid_index ON client_session_logs (user_uuid);

-- database/migrations/2025_01_01_006005_create_client_ips_table.php
CREATE TABLE IF NOT EXISTS client_ips (
  uuid TEXT NOT NULL PRIMARY KEY,
  user_uuid TEXT NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
  client_uuid TEXT NOT NULL REFERENCES clients (uuid) ON DELETE CASCADE,
  ip_address VARCHAR(255) NOT NULL,
  start_use TEXT NOT NULL,
  stop_use TEXT NOT NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL
);
CREATE INDEX IF NOT EXISTS client_ips_user_uuid_index ON client_ips (user_uuid);
CREATE INDEX IF NOT EXISTS client_ips_client_uuid_index ON client_ips (client_uuid);

-- database/migrations/2025_01_01_100001_create_activity_logs_table.php
CREATE TABLE IF NOT EXISTS activity_logs (
  uuid TEXT NOT NULL PRIMARY KEY,
  admin_uuid TEXT NULL REFERENCES admins (uuid) ON DELETE CASCADE,
  client_uuid TEXT NULL REFERENCES clients (uuid) ON DELETE CASCADE,
  user_uuid TEXT NULL REFERENCES users (uuid) ON DELETE CASCADE,
  level VARCHAR(255) NULL,
  action VARCHAR(255) NULL,
  description TEXT NULL,
  model_type VARCHAR(255) NULL,
  model_uuid TEXT NULL,
  model_old_data TEXT NULL,
  model_new_data TEXT NULL,
  ip_address VARCHAR(255) NULL,
  created_at TEXT NULL,
  updated_at TEXT NULL
);
CREATE INDEX IF NOT EXISTS activity_logs_admin_uuid_index ON activity_logs (admin_uuid);
CREATE INDEX IF NOT EXISTS activity_logs_client_uuid_index ON activity_logs (client_uuid);
CREATE INDEX IF NOT EXISTS activity_logs_user_uuid_index ON activity_logs (user_uuid);
