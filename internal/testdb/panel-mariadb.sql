-- The PUQcloud 1.3.0 panel tables the operator touches (and the tables their foreign keys need),
-- written as Laravel 12's MariaDB schema grammar emits them for the panel's own migrations:
-- database charset utf8mb4, collation utf8mb4_unicode_ci, the server's default engine (InnoDB),
-- `uuid` columns in MariaDB's native uuid type (MariaDbGrammar, server >= 10.7; the 'mysql'
-- connection and older servers get char(36)), booleans tinyint(1), strings varchar(255), unique
-- and foreign keys added by ALTER TABLE under Laravel's names (InnoDB adds an index named after
-- each foreign key whose column no other index leads with). Statements follow the migrations'
-- order. Only the tests load this: on a real panel the operator never creates, alters or drops a
-- panel table. The operator's own puq_operator_bindings and puq_operator_membership_bindings are
-- not here: the operator creates them (internal/panel/bindings.go, membership_bindings.go).
-- internal/testdb/schema_test.go checks the result against information_schema expectations
-- written from the same migrations.

-- database/migrations/2025_01_01_003001_create_admins_table.php
-- (here because activity_logs.admin_uuid references it)
create table `admins` (
  `uuid` uuid not null,
  `email` varchar(255) not null,
  `phone_number` varchar(255) null,
  `password` varchar(255) not null,
  `two_factor` tinyint(1) not null default '0',
  `disable` tinyint(1) not null default '0',
  `email_verified` tinyint(1) not null default '0',
  `phone_verified` tinyint(1) not null default '0',
  `firstname` varchar(255) not null,
  `lastname` varchar(255) null,
  `admin_notes` text null,
  `dashboard` longtext null,
  `client_summary_dashboard` longtext null,
  `old_permissions` longtext null,
  `language` varchar(255) null,
  `remember_token` varchar(100) null,
  `created_at` timestamp null,
  `updated_at` timestamp null,
  primary key (`uuid`)
) default character set utf8mb4 collate 'utf8mb4_unicode_ci';
alter table `admins` add unique `admins_email_unique`(`email`);
alter table `admins` add unique `admins_phone_number_unique`(`phone_number`);

-- database/migrations/2025_01_01_005001_create_users_table.php
create table `users` (
  `uuid` uuid not null,
  `email` varchar(255) not null,
  `phone_number` varchar(255) null,
  `password` varchar(255) not null,
  `status` varchar(255) not null default 'new',
  `two_factor` tinyint(1) not null default '0',
  `disable` tinyint(1) not null default '0',
  `firstname` varchar(255) not null,
  `lastname` varchar(255) null,
  `email_verified` tinyint(1) not null default '0',
  `phone_verified` tinyint(1) not null default '0',
  `language` varchar(255) null,
  `notes` longtext null,
  `admin_notes` longtext null,
  `password_reset_token` varchar(255) null,
  `password_reset_token_created_at` timestamp null,
  `remember_token` varchar(100) null,
  `created_at` timestamp null,
  `updated_at` timestamp null,
  primary key (`uuid`)
) default character set utf8mb4 collate 'utf8mb4_unicode_ci';
alter table `users` add unique `users_email_unique`(`email`);
alter table `users` add unique `users_phone_number_unique`(`phone_number`);

-- database/migrations/2025_01_01_005002_create_verifications_table.php
create table `verifications` (
  `uuid` uuid not null,
  `user_uuid` uuid not null,
  `type` varchar(255) not null,
  `value` varchar(255) null,
  `secret` varchar(255) not null,
  `device_name` varchar(255) not null,
  `verified` tinyint(1) not null default '0',
  `default` tinyint(1) not null default '0',
  `expires_at` timestamp null,
  `last_used_at` timestamp null,
  `created_at` timestamp null,
  `updated_at` timestamp null,
  primary key (`uuid`)
) default character set utf8mb4 collate 'utf8mb4_unicode_ci';
alter table `verifications` add constraint `verifications_user_uuid_foreign` foreign key (`user_uuid`) references `users` (`uuid`) on delete cascade;

-- database/migrations/2025_01_01_006001_create_clients_table.php
create table `clients` (
  `uuid` uuid not null,
  `credit_limit` decimal(15, 2) not null default '0',
  `firstname` varchar(255) not null,
  `lastname` varchar(255) null,
  `company_name` varchar(255) null,
  `tax_id` varchar(255) null,
  `status` varchar(255) not null default 'new',
  `language` varchar(255) null,
  `currency_uuid` uuid null,
  `notes` longtext null,
  `admin_notes` longtext null,
  `created_at` timestamp null,
  `updated_at` timestamp null,
  primary key (`uuid`)
) default character set utf8mb4 collate 'utf8mb4_unicode_ci';
alter table `clients` add unique `clients_company_name_unique`(`company_name`);
alter table `clients` add unique `clients_tax_id_unique`(`tax_id`);

-- database/migrations/2025_01_01_006002_create_client_x_user_table.php
create table `client_x_user` (
  `client_uuid` uuid not null,
  `user_uuid` uuid not null,
  `owner` tinyint(1) not null default '0',
  `permissions` longtext null,
  `notifications` longtext null,
  `created_at` timestamp null,
  `updated_at` timestamp null,
  primary key (`user_uuid`, `client_uuid`)
) default character set utf8mb4 collate 'utf8mb4_unicode_ci';
alter table `client_x_user` add constraint `client_x_user_client_uuid_foreign` foreign key (`client_uuid`) references `clients` (`uuid`) on delete cascade;
alter table `client_x_user` add constraint `client_x_user_user_uuid_foreign` foreign key (`user_uuid`) references `users` (`uuid`) on delete cascade;

-- database/migrations/2025_01_01_006004_create_client_session_logs_table.php
create table `client_session_logs` (
  `uuid` uuid not null,
  `client_uuid` uuid not null,
  `user_uuid` uuid not null,
  `action` varchar(255) not null,
  `ip_address` varchar(255) null,
  `session_id` varchar(255) null,
  `url` text not null,
  `method` varchar(255) not null,
  `user_agent` text null,
  `created_at` timestamp null,
  `updated_at` timestamp null,
  primary key (`uuid`)
) default character set utf8mb4 collate 'utf8mb4_unicode_ci';
alter table `client_session_logs` add constraint `client_session_logs_client_uuid_foreign` foreign key (`client_uuid`) references `clients` (`uuid`) on delete cascade;
alter table `client_session_logs` add constraint `client_session_logs_user_uuid_foreign` foreign key (`user_uuid`) references `users` (`uuid`) on delete cascade;

-- database/migrations/2025_01_01_006005_create_client_ips_table.php
create table `client_ips` (
  `uuid` uuid not null,
  `user_uuid` uuid not null,
  `client_uuid` uuid not null,
  `ip_address` varchar(255) not null,
  `start_use` datetime not null,
  `stop_use` datetime not null,
  `created_at` timestamp null,
  `updated_at` timestamp null,
  primary key (`uuid`)
) default character set utf8mb4 collate 'utf8mb4_unicode_ci';
alter table `client_ips` add constraint `client_ips_user_uuid_foreign` foreign key (`user_uuid`) references `users` (`uuid`) on delete cascade;
alter table `client_ips` add constraint `client_ips_client_uuid_foreign` foreign key (`client_uuid`) references `clients` (`uuid`) on delete cascade;

-- database/migrations/2025_01_01_100001_create_activity_logs_table.php
create table `activity_logs` (
  `uuid` uuid not null,
  `admin_uuid` uuid null,
  `client_uuid` uuid null,
  `user_uuid` uuid null,
  `level` varchar(255) null,
  `action` varchar(255) null,
  `description` longtext null,
  `model_type` varchar(255) null,
  `model_uuid` uuid null,
  `model_old_data` longtext null,
  `model_new_data` longtext null,
  `ip_address` varchar(255) null,
  `created_at` timestamp null,
  `updated_at` timestamp null,
  primary key (`uuid`)
) default character set utf8mb4 collate 'utf8mb4_unicode_ci';
alter table `activity_logs` add constraint `activity_logs_admin_uuid_foreign` foreign key (`admin_uuid`) references `admins` (`uuid`) on delete cascade;
alter table `activity_logs` add constraint `activity_logs_client_uuid_foreign` foreign key (`client_uuid`) references `clients` (`uuid`) on delete cascade;
alter table `activity_logs` add constraint `activity_logs_user_uuid_foreign` foreign key (`user_uuid`) references `users` (`uuid`) on delete cascade;

-- database/migrations/2025_12_10_100001_add_indexes_to_transactions_and_clients.php (the clients
-- part; transactions is not here)
alter table `clients` add index `idx_currency_uuid`(`currency_uuid`);
alter table `clients` add index `idx_clients_status`(`status`);
alter table `clients` add index `idx_clients_name`(`firstname`, `lastname`);
alter table `clients` add fulltext `idx_clients_notes`(`notes`, `admin_notes`);
