-- The PUQcloud panel tables as the panel's Laravel migrations create them on MariaDB >= 10.7
-- (native uuid type), utf8mb4 / utf8mb4_unicode_ci, InnoDB. Only the tests load this: on a real
-- panel the operator never creates, alters or drops a panel table.
CREATE TABLE admins (
  uuid uuid NOT NULL PRIMARY KEY,
  email varchar(255) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE users (
  uuid uuid NOT NULL,
  email varchar(255) NOT NULL,
  phone_number varchar(255) NULL DEFAULT NULL,
  password varchar(255) NOT NULL,
  status varchar(255) NOT NULL DEFAULT 'new',
  two_factor tinyint(1) NOT NULL DEFAULT 0,
  disable tinyint(1) NOT NULL DEFAULT 0,
  firstname varchar(255) NOT NULL,
  lastname varchar(255) NULL DEFAULT NULL,
  email_verified tinyint(1) NOT NULL DEFAULT 0,
  phone_verified tinyint(1) NOT NULL DEFAULT 0,
  language varchar(255) NULL DEFAULT NULL,
  notes longtext NULL,
  admin_notes longtext NULL,
  password_reset_token varchar(255) NULL,
  password_reset_token_created_at timestamp NULL DEFAULT NULL,
  remember_token varchar(100) NULL,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (uuid),
  UNIQUE KEY users_email_unique (email),
  UNIQUE KEY users_phone_number_unique (phone_number)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE verifications (
  uuid uuid NOT NULL,
  user_uuid uuid NOT NULL,
  type varchar(255) NOT NULL,
  value varchar(255) NULL,
  secret varchar(255) NOT NULL,
  device_name varchar(255) NOT NULL,
  verified tinyint(1) NOT NULL DEFAULT 0,
  `default` tinyint(1) NOT NULL DEFAULT 0,
  expires_at timestamp NULL DEFAULT NULL,
  last_used_at timestamp NULL DEFAULT NULL,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (uuid),
  KEY verifications_user_uuid_foreign (user_uuid),
  CONSTRAINT verifications_user_uuid_foreign FOREIGN KEY (user_uuid) REFERENCES users (uuid) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE clients (
  uuid uuid NOT NULL,
  credit_limit decimal(15,2) NOT NULL DEFAULT 0.00,
  firstname varchar(255) NOT NULL,
  lastname varchar(255) NULL,
  company_name varchar(255) NULL,
  tax_id varchar(255) NULL,
  status varchar(255) NOT NULL DEFAULT 'new',
  language varchar(255) NULL,
  currency_uuid uuid NULL,
  notes longtext NULL,
  admin_notes longtext NULL,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (uuid),
  UNIQUE KEY clients_company_name_unique (company_name),
  UNIQUE KEY clients_tax_id_unique (tax_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE client_x_user (
  client_uuid uuid NOT NULL,
  user_uuid uuid NOT NULL,
  owner tinyint(1) NOT NULL DEFAULT 0,
  permissions longtext NULL,
  notifications longtext NULL,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (user_uuid, client_uuid),
  KEY client_x_user_client_uuid_foreign (client_uuid),
  CONSTRAINT client_x_user_client_uuid_foreign FOREIGN KEY (client_uuid) REFERENCES clients (uuid) ON DELETE CASCADE,
  CONSTRAINT client_x_user_user_uuid_foreign FOREIGN KEY (user_uuid) REFERENCES users (uuid) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE activity_logs (
  uuid uuid NOT NULL,
  admin_uuid uuid NULL,
  client_uuid uuid NULL,
  user_uuid uuid NULL,
  level varchar(255) NOT NULL,
  action varchar(255) NOT NULL,
  description text NULL,
  model_type varchar(255) NULL,
  model_uuid uuid NULL,
  model_old_data longtext NULL,
  model_new_data longtext NULL,
  ip_address varchar(255) NULL,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (uuid),
  CONSTRAINT activity_logs_admin_uuid_foreign FOREIGN KEY (admin_uuid) REFERENCES admins (uuid) ON DELETE CASCADE,
  CONSTRAINT activity_logs_client_uuid_foreign FOREIGN KEY (client_uuid) REFERENCES clients (uuid) ON DELETE CASCADE,
  CONSTRAINT activity_logs_user_uuid_foreign FOREIGN KEY (user_uuid) REFERENCES users (uuid) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
